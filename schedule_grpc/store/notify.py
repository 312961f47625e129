"""Postgres LISTEN on a dedicated connection (not from the pool), calling back on every notification.

Optionally the same connection holds a session-level advisory lock, which lives exactly as long as
the connection: the replica that counts execution events for the metrics is elected that way (see
metrics.py), so that counters summed over replicas count each event once.
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

POLL_S = 0.5  # how often the thread looks at its stop flag (and tries the lock it does not hold)


class Listener:
    """Listens on ``channel`` and calls ``callback`` for each notification (and after each reconnect,
    for anything announced while it was not listening); reconnects after errors.

    A lost notification only delays work until the next poll, so errors are logged, never raised.
    With ``lock_key`` it also tries, until it holds it, to take that advisory lock (``holds_lock``).
    """

    def __init__(
        self,
        database: Engine,
        channel: str,
        callback: Callable[[], None],
        *,
        lock_key: int | None = None,
        reconnect_s: float = 1.0,
    ) -> None:
        self._conninfo = database.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = channel
        self._callback = callback
        self._lock_key = lock_key
        self._reconnect_s = reconnect_s
        self._stopped = threading.Event()
        self._holds_lock = False
        self.ready = threading.Event()  # set once listening (and the first lock attempt made), or failed
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)

    @property
    def holds_lock(self) -> bool:
        """Whether this replica holds ``lock_key`` right now."""
        return self._holds_lock

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(self._reconnect_s + 5)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=10
                ) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    self._callback()  # anything announced while we were not listening
                    while not self._stopped.is_set():
                        if self._lock_key is not None and not self._holds_lock:
                            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._lock_key,)).fetchone()
                            self._holds_lock = bool(row and row[0])
                        self.ready.set()
                        for _ in conn.notifies(timeout=POLL_S, stop_after=1):
                            self._callback()
            except Exception as error:
                self._holds_lock = False
                self.ready.set()
                if not self._stopped.is_set():
                    log.warning("listening on %s failed: %s; reconnecting", self._channel, error)
                    self._stopped.wait(self._reconnect_s)
        self._holds_lock = False
