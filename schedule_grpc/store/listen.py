"""A dedicated Postgres connection per replica: LISTEN for execution events, and hold one lock.

The lock elects the one replica that counts execution events for the metrics (see metrics.py), so
that counters summed over replicas count each event once. The connection is not from the pool:
a session-level advisory lock lives exactly as long as its connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine

log = logging.getLogger(__name__)

# Advisory lock key of the replica that counts execution events ("SCHEDMET").
COUNTER_LOCK_KEY = 0x5C4ED3E7


class PostgresListener:
    """Calls ``on_notify`` for every notification on ``channel`` (and after each reconnect)."""

    def __init__(self, engine: Engine, channel: str, on_notify: Callable[[], None], *, retry_s: float = 1.0) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = channel
        self._on_notify = on_notify
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._holds_lock = False
        self.ready = threading.Event()  # set once the first lock attempt was made (or failed)
        self._thread = threading.Thread(target=self._run, name="event-listener", daemon=True)

    @property
    def holds_lock(self) -> bool:
        """Whether this replica holds COUNTER_LOCK_KEY right now."""
        return self._holds_lock

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._retry_s + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=10
                ) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    self._on_notify()  # anything committed while we were away
                    while not self._stop.is_set():
                        if not self._holds_lock:
                            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (COUNTER_LOCK_KEY,)).fetchone()
                            self._holds_lock = bool(row and row[0])
                            self.ready.set()
                        for _ in conn.notifies(timeout=self._retry_s, stop_after=1):
                            self._on_notify()
            except psycopg.Error as error:
                self._holds_lock = False
                self.ready.set()
                if not self._stop.is_set():
                    log.warning("event listener lost its connection", extra={"error": str(error)})
                    self._stop.wait(self._retry_s)
        self._holds_lock = False
