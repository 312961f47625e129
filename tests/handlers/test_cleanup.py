"""The cleanup handlers delete what is expired or old, in bounded batches, on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select

from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.settings import Settings
from schedule_grpc.store.platform_tables import api_keys, generations, sessions
from tests.handler_support import context

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _handler(database_url: str, name: str):  # type: ignore[no-untyped-def]
    handler = handler_registry(Settings(database_url=database_url)).get(name)
    assert handler is not None
    return handler


def test_expired_sessions_are_deleted_in_batches_and_live_ones_kept(database_url: str, engine: Engine) -> None:
    rows = [
        {
            "id": f"s{i:03}",
            "user_id": "u1",
            "created_at": NOW - timedelta(days=2),
            "expires_at": NOW + timedelta(minutes=m),
        }
        for i, m in enumerate([-300, -60, -1, -1, -1, 0, 1, 60])
    ]
    with engine.begin() as conn:
        conn.execute(insert(sessions), rows)
    handler = _handler(database_url, "cleanup-expired-sessions")
    result = handler.run(context("cleanup-expired-sessions", {"batchSize": 2}, at=NOW))
    assert result["deletedSessions"] == 5
    assert result["batches"] == 3 and result["complete"] is True
    with engine.connect() as conn:
        left = conn.execute(select(sessions.c.id).order_by(sessions.c.id)).scalars().all()
    assert left == ["s005", "s006", "s007"]  # expiring exactly now, or later
    again = handler.run(context("cleanup-expired-sessions", at=NOW))
    assert again["deletedSessions"] == 0


def test_max_batches_bounds_one_run_and_the_next_run_finishes(database_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(sessions),
            [
                {"id": f"s{i}", "user_id": "u", "created_at": NOW, "expires_at": NOW - timedelta(hours=1)}
                for i in range(7)
            ],
        )
    handler = _handler(database_url, "cleanup-expired-sessions")
    first = handler.run(context("x", {"batchSize": 3, "maxBatches": 1}, at=NOW))
    assert first["deletedSessions"] == 3 and first["complete"] is False
    second = handler.run(context("x", {"batchSize": 3}, at=NOW))
    assert second["deletedSessions"] == 4 and second["complete"] is True


def test_api_keys_without_expiry_are_kept(database_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(api_keys),
            [
                {"id": "k1", "name": "old", "key_hash": "h1", "created_at": NOW, "expires_at": NOW - timedelta(days=1)},
                {"id": "k2", "name": "forever", "key_hash": "h2", "created_at": NOW, "expires_at": None},
                {
                    "id": "k3",
                    "name": "valid",
                    "key_hash": "h3",
                    "created_at": NOW,
                    "expires_at": NOW + timedelta(days=1),
                },
            ],
        )
    result = _handler(database_url, "cleanup-expired-api-keys").run(context("x", at=NOW))
    assert result["deletedApiKeys"] == 1
    with engine.connect() as conn:
        assert set(conn.execute(select(api_keys.c.id)).scalars()) == {"k2", "k3"}


def test_generations_older_than_30_days_are_deleted_and_the_age_is_configurable(
    database_url: str, engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(generations),
            [
                {"id": f"g{age}", "model": "m", "prompt": "p", "output": "o", "created_at": NOW - timedelta(days=age)}
                for age in (1, 10, 29, 31, 90)
            ],
        )
    handler = _handler(database_url, "cleanup-old-generations")
    assert handler.run(context("x", at=NOW))["deletedGenerations"] == 2
    assert handler.run(context("x", {"maxAgeDays": 7}, at=NOW))["deletedGenerations"] == 2
    with engine.connect() as conn:
        assert conn.execute(select(generations.c.id)).scalars().all() == ["g1"]


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"table": "sessions; drop table x"}, "metadata.table"),
        ({"timeColumn": "a.b"}, "metadata.timeColumn"),
        ({"batchSize": 0}, "metadata.batchSize"),
        ({"batchSize": 1.5}, "metadata.batchSize"),
        ({"maxAgeDays": -1}, "metadata.maxAgeDays"),
    ],
)
def test_bad_metadata_is_rejected_naming_the_key(metadata: dict[str, object], field: str) -> None:
    handler = handler_registry(Settings()).get("cleanup-old-generations")
    assert handler is not None
    with pytest.raises(InvalidArgument) as caught:
        handler.validate(metadata)
    assert caught.value.field == field


def test_a_separate_platform_database_gets_the_default_tables_once(tmp_path: object) -> None:
    from pathlib import Path

    from schedule_grpc.store.platform_tables import create_platform_tables

    url = f"sqlite:///{Path(str(tmp_path)) / 'platform.db'}"
    assert "sessions" in create_platform_tables(url) and len(create_platform_tables.__doc__ or "") > 0
    assert create_platform_tables(url) == []
