"""grpc.health.v1 statuses that tell the truth: NOT_SERVING while a dependency is down or we stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)

SERVICE_NAME = "schedule.v1.ScheduleService"


class HealthMonitor:
    """Runs the checks every ``interval_s`` and publishes SERVING only while all of them pass.

    A check is a callable that raises when its dependency is unusable.
    """

    def __init__(
        self,
        servicer: health.HealthServicer,
        checks: Iterable[tuple[str, Callable[[], None]]],
        *,
        interval_s: float,
    ) -> None:
        self._servicer = servicer
        self._checks = list(checks)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="health-monitor", daemon=True)
        self._failing: dict[str, str] = {}

    def start(self) -> None:
        self.check_once()
        self._thread.start()

    def check_once(self) -> bool:
        """Runs every check now and publishes the result; True when all pass."""
        failing: dict[str, str] = {}
        for name, check in self._checks:
            try:
                check()
            except Exception as error:
                failing[name] = str(error)
        for name, reason in failing.items():
            if self._failing.get(name) != reason:
                log.error("health check failed", extra={"check": name, "error": reason})
        for name in self._failing.keys() - failing.keys():
            log.info("health check recovered", extra={"check": name})
        self._failing = failing
        status = health_pb2.HealthCheckResponse.NOT_SERVING if failing else health_pb2.HealthCheckResponse.SERVING
        if not self._stop.is_set():
            for service in ("", SERVICE_NAME):
                self._servicer.set(service, status)
        return not failing

    @property
    def failing(self) -> dict[str, str]:
        return dict(self._failing)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check_once()

    def stop(self) -> None:
        """Stops checking and reports NOT_SERVING to every watcher (graceful shutdown)."""
        self._stop.set()
        self._servicer.enter_graceful_shutdown()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval_s + 1)
