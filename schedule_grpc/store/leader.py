"""Leader election: a session advisory lock on a dedicated Postgres connection, epochs and a lease.

The lock connection is not from the pool and has TCP keepalives, so a dead leader's lock is released
by Postgres as soon as its session ends, and a leader whose connection broke learns it at its next
check. The same connection LISTENs for task changes, so one round trip proves both.

A live socket does not prove a live leader: a paused process (SIGSTOP, a frozen VM) or a stuck
firing loop keeps its session, and with it the lock. So the leader's firing loop also renews a
lease row (its epoch, its lock connection's backend pid, an expiry); a follower that sees the lease
go unrenewed terminates that backend, which releases the lock, and takes over (see ``LeaseStore``).
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg
from sqlalchemy import Engine, delete, insert, select, update

from schedule_grpc.store.db import translate_errors
from schedule_grpc.store.tables import leader_epochs, leader_lease
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

    def backend_pid(self) -> int | None:
        """The database backend of this replica's lock connection (None without one)."""
        ...

    def holder(self) -> int | None:
        """The backend pid holding the lock now, as seen by this replica (None: free, or unknown)."""
        ...

    def terminate(self, backend_pid: int) -> bool:
        """Ends that backend's session, releasing the locks it holds; True when it was signalled."""
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

    def backend_pid(self) -> int | None:
        conn = self._conn
        return None if conn is None or conn.closed else int(conn.info.backend_pid)

    def holder(self) -> int | None:
        try:
            row = (
                self._connect()
                .execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    (LEADER_LOCK_KEY & 0xFFFFFFFF,),
                )
                .fetchone()
            )
        except psycopg.Error:
            self._close()
            raise
        return None if row is None else int(row[0])

    def terminate(self, backend_pid: int) -> bool:
        try:
            row = self._connect().execute("SELECT pg_terminate_backend(%s)", (backend_pid,)).fetchone()
        except psycopg.Error:
            self._close()
            raise
        return bool(row and row[0])

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

    def backend_pid(self) -> int | None:
        return None

    def holder(self) -> int | None:
        return None

    def terminate(self, backend_pid: int) -> bool:
        return False


def lock_for(engine: Engine) -> LeaderLock:
    """The leader lock suited to the database behind ``engine``."""
    if engine.dialect.name == "postgresql":
        return PostgresLeaderLock(engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
    return LocalLeaderLock()


def lease_for(engine: Engine) -> LeaseStore:
    """The lease suited to the database behind ``engine`` (renewed only where replicas share it)."""
    return LeaseStore(engine, shared=engine.dialect.name == "postgresql")


@dataclass(frozen=True)
class Lease:
    """The current leader's lease, as its firing loop last renewed it."""

    epoch: int
    replica_id: str
    backend_pid: int | None
    renewals: int  # grows with each renewal: a follower watches it move
    renewed_at: datetime
    expires_at: datetime


_LEASE = "scheduler"


class LeaseStore:
    """Epochs and the leader's lease row.

    ``shared`` (Postgres): renewals are written, and a renewal fails once another epoch began. On
    SQLite the single replica always leads and a renewal writes nothing.
    """

    def __init__(self, engine: Engine, *, shared: bool) -> None:
        self._engine = engine
        self._shared = shared

    def promote(
        self, *, replica_id: str, backend_pid: int | None, now: datetime, expires_at: datetime, reason: str
    ) -> int:
        """Records a new epoch (the numbers grow with each) and makes its lease the current one, atomically."""
        with translate_errors(), self._engine.begin() as conn:
            epoch = int(
                conn.execute(
                    insert(leader_epochs)
                    .values(replica_id=replica_id, acquired_at=now, backend_pid=backend_pid, reason=reason)
                    .returning(leader_epochs.c.epoch)
                ).scalar_one()
            )
            conn.execute(delete(leader_lease).where(leader_lease.c.name == _LEASE))
            conn.execute(
                insert(leader_lease).values(
                    name=_LEASE,
                    epoch=epoch,
                    replica_id=replica_id,
                    backend_pid=backend_pid,
                    renewals=0,
                    renewed_at=now,
                    expires_at=expires_at,
                )
            )
            return epoch

    def renew(self, epoch: int, now: datetime, expires_at: datetime) -> bool:
        """Extends ``epoch``'s lease; False when ``epoch`` is no longer the current one (deposed)."""
        if not self._shared:
            return True
        with translate_errors(), self._engine.begin() as conn:
            renewed = conn.execute(
                update(leader_lease)
                .where(leader_lease.c.name == _LEASE, leader_lease.c.epoch == epoch)
                .values(renewals=leader_lease.c.renewals + 1, renewed_at=now, expires_at=expires_at)
            )
            return renewed.rowcount == 1

    def current(self, epoch: int) -> bool:
        """Whether ``epoch`` is still the current one (read only)."""
        if not self._shared:
            return True
        lease = self.read()
        return lease is not None and lease.epoch == epoch

    def read(self) -> Lease | None:
        """The current lease (None before the first promotion)."""
        with translate_errors(), self._engine.connect() as conn:
            row = conn.execute(select(leader_lease).where(leader_lease.c.name == _LEASE)).first()
        if row is None:
            return None
        return Lease(
            epoch=row.epoch,
            replica_id=row.replica_id,
            backend_pid=row.backend_pid,
            renewals=row.renewals,
            renewed_at=row.renewed_at,
            expires_at=row.expires_at,
        )
