"""Handlers reach data only through handlers.data; the store's side of it stays in step with the store."""

from __future__ import annotations

from schedule_grpc.handlers.data import PLATFORM_TABLES
from schedule_grpc.store.platform_tables import platform_metadata


def test_the_handlers_know_every_platform_table_the_store_creates() -> None:
    # update-analytics counts these tables by default; a table added to the store must be counted too
    assert set(PLATFORM_TABLES) == set(platform_metadata.tables)
