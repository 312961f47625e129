"""The engine's failing parts (its loop, its reconciliation, its promotion), each with its last error."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Failures:
    """What is failing now, by part; each failure and recovery is logged once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, str] = {}

    def failed(self, part: str, error: BaseException) -> None:
        with self._lock:
            new = self._failures.get(part) != str(error)
            self._failures[part] = str(error)
        if new:
            log.error("scheduling engine failing", extra={"part": part, "error": str(error)}, exc_info=error)

    def recovered(self, part: str) -> None:
        with self._lock:
            was = self._failures.pop(part, None)
        if was is not None:
            log.info("scheduling engine recovered", extra={"part": part})

    def now(self) -> dict[str, str]:
        """A copy of the current failures: part -> its last error."""
        with self._lock:
            return dict(self._failures)
