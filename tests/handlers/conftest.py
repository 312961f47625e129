"""Fixtures of the handler tests: loopback servers and the platform database (the migrated test database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from schedule_grpc.store import db
from tests.handler_support import GrpcTestServer, JsonServer


@pytest.fixture
def json_server() -> Iterator[JsonServer]:
    server = JsonServer()
    yield server
    server.close()


@pytest.fixture
def grpc_server() -> Iterator[GrpcTestServer]:
    server = GrpcTestServer()
    yield server
    server.close()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The platform database: by default the service's own, where migration 0005 made the tables."""
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()
