"""Leader election: a session advisory lock on a dedicated Postgres connection, and epochs.

The lock connection is not from the pool and has TCP keepalives, so a dead leader's lock is released
by Postgres as soon as its session ends, and a leader whose connection broke learns it at its next
check. The same connection LISTENs for task changes, so one round trip proves both.
"""

from __future__ import annotations

import logging
import queue
from datetime import datetime
from typing import Any, Protocol

import psycopg
from sqlalchemy import Engine, insert

from schedule_grpc.store.db import translate_errors
from schedule_grpc.store.tables import leader_epochs
from schedule_grpc.store.tasks import CHANGES_CHANNEL

log = logging.getLogger(__name__)

# Key of the advisory lock held by the replica that fires (advisory locks are per database).
LEADER_LOCK_KEY = 0x5C4ED1EA


class LeadershipLost(Exception):
    """The lock connection failed or no longer holds the lock: stop firing at once."""


class LeaderLock(Protocol):
    """One replica's view of the leadership."""

    def try_acquire(self) -> bool:
        """Takes the lock if it is free; True when this replica now leads. Raises on a database error."""
        ...

    def wait_changes(self, timeout_s: float) -> list[str]:
        """Names of tasks changed anywhere, waiting up to ``timeout_s``; raises LeadershipLost."""
        ...

    def changed(self, name: str) -> None:
        """A task was changed in this process (in-process delivery where there is no NOTIFY)."""
        ...

    def release(self) -> None:
        """Gives the lock up and closes the connection (idempotent)."""
        ...


class PostgresLeaderLock:
    """``pg_try_advisory_lock`` on a dedicated, keepalive connection that also LISTENs for changes."""

    def __init__(self, conninfo: str, *, connect_timeout_s: int = 3) -> None:
        self._conninfo = conninfo
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=self._connect_timeout_s,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                tcp_user_timeout=10_000,
                application_name="schedule-grpc leader lock",
            )
        return self._conn

    def try_acquire(self) -> bool:
        try:
            conn = self._connect()
            acquired = bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()[0])  # type: ignore[index]
            if acquired:
                conn.execute(f"LISTEN {CHANGES_CHANNEL}")
            return acquired
        except psycopg.Error:
            self._close()
            raise

    def wait_changes(self, timeout_s: float) -> list[str]:
        conn = self._conn
        if conn is None:
            raise LeadershipLost("no lock connection")
        try:
            names = [n.payload for n in conn.notifies(timeout=timeout_s, stop_after=1)]
            names += [n.payload for n in conn.notifies(timeout=0.001)]
            held = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                " AND granted AND objid = %s",
                (LEADER_LOCK_KEY & 0xFFFFFFFF,),
            ).fetchone()
        except psycopg.Error as error:
            self._close()
            raise LeadershipLost(f"lock connection failed: {error}") from error
        if not held or not held[0]:
            self._close()
            raise LeadershipLost("the advisory lock is no longer held")
        return names

    def changed(self, name: str) -> None:
        """Nothing to do: the change's NOTIFY reaches the lock connection."""

    def release(self) -> None:
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                conn.close()  # ending the session releases the lock
            except psycopg.Error:  # pragma: no cover - closing a broken socket
                log.debug("closing the lock connection failed", exc_info=True)


class LocalLeaderLock:
    """A single replica (SQLite): always the leader; changes arrive in process."""

    def __init__(self) -> None:
        self._changes: queue.SimpleQueue[str] = queue.SimpleQueue()

    def try_acquire(self) -> bool:
        return True

    def wait_changes(self, timeout_s: float) -> list[str]:
        try:
            names = [self._changes.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        while True:
            try:
                names.append(self._changes.get_nowait())
            except queue.Empty:
                return names

    def changed(self, name: str) -> None:
        self._changes.put(name)

    def release(self) -> None:
        pass


def lock_for(engine: Engine) -> LeaderLock:
    """The leader lock suited to the database behind ``engine``."""
    if engine.dialect.name == "postgresql":
        return PostgresLeaderLock(engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
    return LocalLeaderLock()


def record_epoch(engine: Engine, replica_id: str, now: datetime) -> int:
    """Records a promotion; the epoch numbers grow with each one."""
    with translate_errors(), engine.begin() as conn:
        result = conn.execute(
            insert(leader_epochs).values(replica_id=replica_id, acquired_at=now).returning(leader_epochs.c.epoch)
        )
        return int(result.scalar_one())
