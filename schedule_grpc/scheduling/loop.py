"""The leader's firing loop: its scheduler's lifetime, its heartbeat, and a loop that will not stop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from schedule_grpc.scheduling.apscheduler import OnDue, TaskScheduler

log = logging.getLogger(__name__)


class FiringLoop:
    """Starts and stops the ``TaskScheduler`` of each leadership, and times the loop's silence.

    Before each pass the loop calls ``renew`` (the engine renews its lease there and says whether
    this replica may still fire); ``beat`` marks that moment, on the ``monotonic`` clock. A loop
    that does not stop within ``stop_timeout_s`` is *stuck*: it is kept so that health can report it
    and the engine does not lead again while it runs.
    """

    def __init__(
        self,
        *,
        database: Any,
        now: Callable[[], datetime],
        monotonic: Callable[[], float],
        on_due: OnDue,
        renew: Callable[[], bool],
        failed: Callable[[BaseException], None],
        recovered: Callable[[], None],
        retry_s: float,
        lease_interval_s: float,
        silent_after_s: float,
        stop_timeout_s: float,
    ) -> None:
        self._database = database
        self._now = now
        self._monotonic = monotonic
        self._on_due = on_due
        self._renew = renew
        self._failed = failed
        self._recovered = recovered
        self._retry_s = retry_s
        self._lease_interval_s = lease_interval_s
        self._silent_after_s = silent_after_s
        self._stop_timeout_s = stop_timeout_s
        self.scheduler: TaskScheduler | None = None
        self._last_beat = monotonic()  # when the loop last began a pass (renewed the lease)
        self._stopping: TaskScheduler | None = None  # a loop being stopped (leadership ended)
        self._stuck: TaskScheduler | None = None  # a loop that did not stop when leadership ended

    def start(self) -> TaskScheduler:
        """A new scheduler, started paused (the caller aligns its entries, then resumes it)."""
        scheduler = TaskScheduler(
            self._database,
            now=self._now,
            on_due=self._on_due,
            on_error=self._failed,
            on_pass=self._recovered,
            retry_s=self._retry_s,
            before_pass=self._before_pass,
            max_wait_s=self._lease_interval_s,
        )
        self.scheduler = scheduler
        scheduler.start(paused=True)
        return scheduler

    def _before_pass(self, scheduler: TaskScheduler) -> bool:
        return scheduler is self.scheduler and self._renew()

    def beat(self) -> None:
        self._last_beat = self._monotonic()

    @property
    def alive(self) -> bool:
        """False when the current scheduler's loop thread died (or there is none)."""
        return self.scheduler is not None and self.scheduler.loop_alive

    def silent_s(self, leading: bool) -> float | None:
        """How long the loop has been silent, when longer than allowed (while leading or stopping)."""
        if not leading and self._stopping is None:
            return None
        silent_s = self._monotonic() - self._last_beat
        return silent_s if silent_s > self._silent_after_s else None

    @property
    def stuck(self) -> bool:
        """A loop that did not stop when its leadership ended is still running."""
        stuck = self._stuck
        return stuck is not None and stuck.loop_alive

    def still_stuck(self, replica_id: str) -> bool:
        """Like ``stuck``, and forgets (with a log line) a stuck loop that has ended."""
        if self._stuck is None:
            return False
        if self.stuck:
            return True
        self._stuck = None
        log.warning("the stuck firing loop ended; campaigning again", extra={"replica_id": replica_id})
        return False

    def stop(self, replica_id: str) -> None:
        """Stops the current scheduler; one that does not stop in time is kept as stuck."""
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is None:
            return
        self._stopping = scheduler  # meanwhile health still reports a silent loop
        try:
            if not scheduler.stop_within(self._stop_timeout_s):
                self._stuck = scheduler
                log.error("the firing loop did not stop: it is stuck", extra={"replica_id": replica_id})
        finally:
            self._stopping = None
