"""Fixtures: a fresh database per test (a SQLite file, and Postgres), a real server on port 0.

Postgres tests run against SCHEDULE_TEST_POSTGRES_URL (default: the local server). Each test gets
its own database copied from a migrated template. When Postgres cannot be reached the Postgres
tests are skipped, unless SCHEDULE_TEST_REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from schedule_grpc.app import Replica, build
from schedule_grpc.settings import Settings
from schedule_grpc.store import db
from tests.support import FakeClock, Webhook

POSTGRES_URL = os.environ.get("SCHEDULE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("SCHEDULE_TEST_REQUIRE_POSTGRES") == "1"
TEMPLATE = f"schedule_tmpl_{os.getpid()}"


def _admin_engine() -> Engine:
    return create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database; per-test databases are copied from it."""
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE}"'))
            conn.execute(text(f'CREATE DATABASE "{TEMPLATE}"'))
    except Exception as error:
        if REQUIRE_POSTGRES:
            pytest.fail(f"Postgres is required (SCHEDULE_TEST_REQUIRE_POSTGRES=1) but unreachable: {error}")
        pytest.skip(f"Postgres unreachable: {error}")
    url = make_url(POSTGRES_URL).set(database=TEMPLATE).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.migrate(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.migrate(engine)
    engine.dispose()
    return path


def _postgres_database(template_url: str) -> Iterator[str]:
    name = f"schedule_t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'))
    yield make_url(template_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A fresh, migrated Postgres database."""
    yield from _postgres_database(postgres_template)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated SQLite file."""
    path = tmp_path / "schedule.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on a SQLite file and on Postgres."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(database_url: str, clock: FakeClock) -> Iterator[Replica]:
    """A real replica serving on 127.0.0.1 at a free port."""
    # The API tests move a fake clock; the scheduling engine (wall-clock loop) has its own tests.
    settings = Settings(
        database_url=database_url,
        grpc_address="127.0.0.1:0",
        migrate_on_start=False,
        engine_enabled=False,
        metrics_address="127.0.0.1:0",
        egress_allow="127.0.0.0/8",  # the tests' receivers are on loopback
    )
    svc = build(settings, clock=clock)
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def channel(service: Replica) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.ScheduleServiceStub:
    return pb_grpc.ScheduleServiceStub(channel)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()
