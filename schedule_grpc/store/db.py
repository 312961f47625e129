"""Database engine, migrations at start-up, and translation of driver errors."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from importlib.resources import files
from typing import Any, TypeAlias

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, Engine, String, any_, bindparam, create_engine, event, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from schedule_grpc.domain.errors import Unavailable

log = logging.getLogger(__name__)

# Key of the advisory lock that serialises migrations of replicas starting together.
MIGRATION_LOCK_KEY = 0x5C4ED01E

# The service's database as the rest of the package names it (the word "engine" is the scheduling engine's).
Database: TypeAlias = Engine


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for ``url``: SQLite (one file, WAL) or Postgres through psycopg 3.

    Statement parameters are never logged nor quoted in errors (``hide_parameters``): they carry task
    metadata, whose secrets must not reach a log line, even with SQL logging turned on at DEBUG.
    """
    if url.startswith("sqlite"):
        database = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)

        @event.listens_for(database, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return database
    database = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        hide_parameters=True,
        # Sessions in UTC: timestamptz values arrive as datetime.UTC and need no conversion.
        connect_args={"connect_timeout": 5, "options": "-c timezone=UTC"},
    )
    _ping_idle_connections(database)
    return database


# A pooled connection idle longer than this is pinged before use (the database may have restarted, or a
# firewall dropped it). One used moments ago is not: a ping on every checkout was a round trip per RPC.
PING_AFTER_IDLE_S = 1.0


def _ping_idle_connections(database: Engine) -> None:
    @event.listens_for(database, "checkin")
    def _checked_in(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(database, "checkout")
    def _checked_out(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            with dbapi_conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            if not dbapi_conn.autocommit:
                dbapi_conn.rollback()
        except Exception as error:  # the pool replaces the connection and tries again
            raise DisconnectionError(f"pooled connection is gone: {error}") from error


def autocommit(database: Engine) -> Engine:
    """The same pool, without BEGIN/ROLLBACK around each use: for single-statement reads."""
    return database.execution_options(isolation_level="AUTOCOMMIT")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("schedule_grpc.store") / "migrations"))
    return config


def migrate(database: Engine) -> None:
    """Applies pending migrations. On Postgres, replicas starting together take turns."""
    config = _alembic_config()
    with database.connect() as conn:
        if database.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()
        try:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()
        finally:
            if database.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                conn.commit()
    log.info("database schema is current", extra={"database": database.url.render_as_string()})


def ping(database: Engine) -> None:
    """Raises Unavailable unless the database answers a trivial query."""
    with translate_errors(), database.connect() as conn:
        conn.execute(text("SELECT 1"))


def among(column: ColumnElement[str], name: str, *, postgres: bool) -> ColumnElement[bool]:
    """``column`` is one of the list of strings bound as ``name``: ``= ANY(array)`` on Postgres, so a batch of
    1,000 ids is one parameter of a statement compiled once, not 1,000 placeholders rendered on every call
    (measured in a burst of 1,000: the rendering was a tenth of the replica's CPU)."""
    if postgres:
        return column == any_(bindparam(name, type_=ARRAY(String)))
    return column.in_(bindparam(name, expanding=True))


def is_unique_violation(error: IntegrityError) -> bool:
    """Whether ``error`` is a unique-constraint violation (and not, say, a foreign key)."""
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return "UNIQUE constraint failed" in str(orig)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turns a lost or unreachable database into Unavailable; other errors pass through."""
    try:
        yield
    except OperationalError as error:
        raise Unavailable(f"database unavailable: {error.orig}") from error
    except DBAPIError as error:
        if error.connection_invalidated:
            raise Unavailable(f"database connection lost: {error.orig}") from error
        raise
