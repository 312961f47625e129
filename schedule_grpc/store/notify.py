"""Postgres LISTEN on a dedicated connection (not from the pool), calling back on every notification."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine

log = logging.getLogger(__name__)


class Listener:
    """Listens on ``channel`` and calls ``callback`` for each notification; reconnects after errors.

    A lost notification only delays work until the next poll, so errors are logged, never raised.
    """

    def __init__(self, engine: Engine, channel: str, callback: Callable[[], None], *, reconnect_s: float = 1.0) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = channel
        self._callback = callback
        self._reconnect_s = reconnect_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=10
                ) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    self._callback()  # anything announced while we were not listening
                    while not self._stopped.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._callback()
            except Exception as error:
                log.warning("listening on %s failed: %s; reconnecting", self._channel, error)
                self._stopped.wait(self._reconnect_s)
