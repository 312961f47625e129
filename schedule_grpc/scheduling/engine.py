"""The engine's lifecycle: election, lease, takeover, promotion, reconciliation, supervising the loop.

The parts it drives live beside it: the firing loop (``loop``), the APScheduler adapter
(``apscheduler``), the reconciler (``reconcile``), the recorder of occurrences (``record``), the
campaign and lease watch (``lease``) and the failing parts (``health``). What is left here is the
leadership state machine, ~300 lines that read best in one place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.firing import Occurrence
from schedule_grpc.scheduling.apscheduler import Due, TaskScheduler
from schedule_grpc.scheduling.health import Failures
from schedule_grpc.scheduling.lease import Campaign, LeaseWatch
from schedule_grpc.scheduling.loop import FiringLoop
from schedule_grpc.scheduling.reconcile import DEFAULT_MAX_CATCHUP_ROWS, Reconciler, ReconcileResult
from schedule_grpc.scheduling.record import Recorder
from schedule_grpc.store.leader import LeaderLock, LeadershipLost, LeaseStore
from schedule_grpc.store.occurrences import EnqueueResult, OccurrenceStore
from schedule_grpc.store.tasks import TaskStore

log = logging.getLogger(__name__)


def _ahead(clock: Clock, lead: timedelta) -> Callable[[], datetime]:
    if not lead:
        return clock.now
    return lambda: clock.now() + lead


def _nothing() -> None:
    pass


class SchedulingEngine:
    """Fires every enabled task, once per instant, while this replica is the elected leader.

    A thread campaigns for the leader lock every ``retry_interval_s``. On promotion the engine
    records an epoch and its lease, starts the firing loop paused, reconciles every task (catching
    up what was missed), then lets it run. While leading it verifies the lock every ``retry_interval_s``
    (stopping at once on any error), reconciles each changed task as its notification arrives,
    reconciles everything every ``reconcile_interval_s``, and restarts the firing loop if it ever
    died.

    The lease: the firing loop itself renews it every ``lease_interval_s`` (for a term of two
    intervals), and that renewal is also the check, before each firing pass, that this replica's
    epoch is still the current one; when it is not, the pass fires nothing and the engine steps
    down. A follower that sees the lease unrenewed for its term plus ``grace_s`` (on its own
    ``monotonic`` clock; see ``scheduling.lease``) terminates the silent leader's lock connection and
    takes over, recording why in its epoch. A leader whose own loop stops renewing steps down too,
    reports NOT_SERVING, and does not campaign again while that loop is stuck.

    Only tasks due within ``horizon_s`` have an entry in the scheduler (default: three reconcile
    intervals, at least two minutes), so the scheduler's size follows the tasks due soon, not all tasks.
    """

    def __init__(
        self,
        *,
        database: Any,
        tasks: TaskStore,
        occurrences: OccurrenceStore,
        lock: LeaderLock,
        lease: LeaseStore,
        clock: Clock,
        replica_id: str,
        reconcile_interval_s: float = 60.0,
        retry_interval_s: float = 0.5,
        on_enqueued: Callable[[], None] = _nothing,
        horizon_s: float | None = None,
        lease_interval_s: float = 1.0,
        grace_s: float = 3.0,
        monotonic: Callable[[], float] = time.monotonic,
        max_catchup_rows: int = DEFAULT_MAX_CATCHUP_ROWS,
        lead_s: float = 0.0,
    ) -> None:
        self._max_catchup_rows = max_catchup_rows
        self._catchup_deferred = False
        self._tasks = tasks
        self._lock = lock
        self._lease = lease
        self._clock = clock
        self.replica_id = replica_id
        self._reconcile_interval_s = reconcile_interval_s
        self._retry_s = retry_interval_s
        self._horizon = timedelta(seconds=horizon_s if horizon_s is not None else max(3 * reconcile_interval_s, 120))
        self._stop = threading.Event()
        self._leading = threading.Event()
        self._ready = threading.Event()  # leading and promoted (caught up, loop running)
        self._thread = threading.Thread(target=self._run, name="scheduling-engine", daemon=True)
        self._reconciler: Reconciler | None = None
        self._failures = Failures()
        self._failed, self._recovered = self._failures.failed, self._failures.recovered
        self._term = timedelta(seconds=2 * lease_interval_s)
        self._monotonic = monotonic
        self._campaign = Campaign(
            lock, lease, LeaseWatch(grace_s), monotonic, retry_s=retry_interval_s, stop=self._stop
        )
        self._loop = FiringLoop(
            database=database,
            # The loop runs ``lead_s`` ahead: each instant's occurrences are stored that long before it, so the
            # executors can claim them and start them at the instant itself (see Executor's fire lead).
            now=_ahead(clock, timedelta(seconds=lead_s)),
            monotonic=monotonic,
            on_due=self._fire,
            renew=self._renew,
            failed=lambda error: self._failed("loop", error),
            recovered=lambda: self._recovered("loop"),
            retry_s=retry_interval_s,
            lease_interval_s=lease_interval_s,
            silent_after_s=self._term.total_seconds() + grace_s,
            stop_timeout_s=max(5.0, 2 * self._term.total_seconds()),
        )
        self._deposed: str | None = None  # set by the loop when its epoch is no longer current
        self.epoch: int | None = None
        self._recorder = Recorder(occurrences, clock, on_enqueued)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops firing and gives the leadership up (another replica takes over at once)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._retry_s + 30)

    @property
    def totals(self) -> EnqueueResult:
        """What the occurrences this replica stored became, counted since it started."""
        return self._recorder.totals

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def wait_leader(self, timeout_s: float) -> bool:
        """Blocks until this replica leads and has caught up (True) or ``timeout_s`` passes (False)."""
        return self._ready.wait(timeout_s)

    def task_changed(self, name: str) -> None:
        """A task changed in this process; reconciled at once (Postgres also delivers it by NOTIFY)."""
        self._lock.changed(name)

    def reconcile_now(self) -> ReconcileResult | None:
        """A full reconciliation now (None when not leading)."""
        reconciler = self._reconciler
        if reconciler is None or not self.is_leader:
            return None
        result = reconciler.full()
        self._catchup_deferred = result.deferred > 0
        return result

    def check(self) -> None:
        """Health: raises while the engine is failing (its loop, stuck or erring, or its reconciliation)."""
        failures = self._failures.now()
        silent_s = self._loop_silent_s()
        if silent_s is not None:
            failures["loop"] = f"the firing loop has not run for {silent_s:.1f}s"
        if self._loop.stuck:
            failures["loop"] = "a firing loop that stopped leading is stuck; this replica does not lead meanwhile"
        if failures:
            raise RuntimeError("; ".join(f"{k}: {v}" for k, v in sorted(failures.items())))

    # --- the campaign ----------------------------------------------------------------------

    def _run(self) -> None:
        next_full = 0.0
        lock_error: str | None = None
        try:
            while not self._stop.is_set():
                if not self.is_leader:
                    reason: str | None = None
                    if not self._loop.still_stuck(self.replica_id):
                        try:
                            reason = self._campaign.attempt()
                            lock_error = None
                        except Exception as error:
                            if str(error) != lock_error:
                                log.warning("cannot campaign for leadership", extra={"error": str(error)})
                            lock_error = str(error)
                    if reason is not None and self._promote(reason):
                        next_full = time.monotonic() + self._reconcile_interval_s
                        continue
                    self._stop.wait(self._retry_s)
                    continue
                try:
                    names = self._lock.wait_changes(self._retry_s)
                except LeadershipLost as error:
                    self._demote(str(error))
                    continue
                if self._stop.is_set():
                    break
                if self._deposed is not None:
                    self._demote(self._deposed)
                    continue
                silent_s = self._loop_silent_s()
                if silent_s is not None:
                    self._demote(f"the firing loop has not run for {silent_s:.1f}s")
                    continue
                next_full = self._lead(names, next_full)
        finally:
            if self.is_leader:
                self._demote("shutting down")
            self._lock.release()

    def _loop_silent_s(self) -> float | None:
        """How long the firing loop has been silent, when longer than the lease's term plus the grace."""
        return self._loop.silent_s(self._ready.is_set())

    @property
    def _scheduler(self) -> TaskScheduler | None:
        return self._loop.scheduler

    def _renew(self) -> bool:
        """Run by the firing loop before each pass: renews the lease; False when it must not fire."""
        epoch = self.epoch
        if epoch is None or not self.is_leader or self._deposed:
            return False
        self._loop.beat()
        now = self._clock.now()
        if self._lease.renew(epoch, now, now + self._term):
            return True
        self._deposed = f"epoch {epoch} is no longer the current one"
        return False

    def _lead(self, names: list[str], next_full: float) -> float:
        reconciler = self._reconciler
        assert reconciler is not None
        try:
            self._supervise()
            full = False
            for name in dict.fromkeys(names):
                full = full or reconciler.one(name) is None
            if full or self._catchup_deferred or time.monotonic() >= next_full:
                # a pass that left catch-up for later is followed by another at once (bounded rows each)
                self._catchup_deferred = reconciler.full().deferred > 0
                next_full = time.monotonic() + self._reconcile_interval_s
            self._recovered("reconcile")
        except LeadershipLost as error:
            self._demote(str(error))
        except Exception as error:
            self._failed("reconcile", error)
        return next_full

    def _promote(self, reason: str) -> bool:
        try:
            now = self._clock.now()
            self._deposed = None
            self._loop.beat()
            self.epoch = self._lease.promote(
                replica_id=self.replica_id,
                backend_pid=self._lock.backend_pid(),
                now=now,
                expires_at=now + self._term,
                reason=reason,
            )
            self._leading.set()
            self._start_scheduler()
        except Exception as error:
            self._failed("promotion", error)
            self._demote(f"promotion failed: {error}")
            return False
        self._recovered("promotion")
        self._ready.set()
        log.info("leading", extra={"replica_id": self.replica_id, "epoch": self.epoch, "reason": reason})
        return True

    def _start_scheduler(self) -> None:
        scheduler = self._loop.start()
        self._reconciler = Reconciler(
            scheduler,
            self._tasks,
            self._hand_on,
            self._clock,
            horizon=self._horizon,
            max_catchup_rows=self._max_catchup_rows,
        )
        self._catchup_deferred = self._reconciler.full().deferred > 0  # catch up and align before the first pass
        scheduler.resume()

    def _supervise(self) -> None:
        if self._scheduler is not None and not self._loop.alive:
            self._failed("loop", RuntimeError("the scheduler loop stopped; restarting it"))
            self._shutdown_scheduler()
            self._start_scheduler()
            self._recovered("loop")

    def _demote(self, reason: str) -> None:
        was_leading = self.is_leader
        self._ready.clear()
        self._leading.clear()  # first: a pass still finishing stores nothing (and the fence is there anyway)
        self._shutdown_scheduler()
        self._reconciler = None
        self._lock.release()
        if was_leading:
            log.warning("stopped leading", extra={"replica_id": self.replica_id, "epoch": self.epoch, "reason": reason})

    def _shutdown_scheduler(self) -> None:
        self._loop.stop(self.replica_id)

    # --- handing occurrences on --------------------------------------------------------------

    def _fire(self, due: list[Due]) -> None:
        """A pass's due instants: stored behind the fence, with each task's next run (see the package doc)."""
        if not self.is_leader:  # stepped down during the pass: abandon it, its entries included
            raise LeadershipLost("stopped leading during the pass")
        occurrences = [
            Occurrence(d.task_id, t, d.schedule.expression, d.schedule.timezone) for d in due for t in d.instants
        ]
        self._hand_on(occurrences, {d.task_id: d.next_run for d in due})

    def _hand_on(self, occurrences: list[Occurrence], next_runs: Mapping[str, datetime]) -> None:
        epoch = self.epoch
        if not self.is_leader or epoch is None:
            log.warning("not leading: occurrences left to the leader", extra={"occurrences": len(occurrences)})
            return
        if self._deposed is not None or not self._lease.current(epoch):
            # a pass that began before another replica took over: nothing of it is written
            self._deposed = self._deposed or f"epoch {epoch} is no longer the current one"
            raise LeadershipLost(self._deposed)
        self._recorder.record(occurrences, next_runs)
