"""Keeps APScheduler's job store in step with the tasks table (the source of truth), with catch-up.

Only the tasks due within a *horizon* (a few reconcile intervals) have a job: with 100,000 tasks
spread over an hour the scheduler holds a few thousand jobs, not 100,000, so promotion time, memory
and each full reconciliation grow with the tasks due soon rather than with every task. A task beyond
the horizon lives only in the tasks table (its ``next_run`` kept there); a later full reconciliation,
which runs well inside the horizon, gives it a job before its instant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError

from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.cron import CronSchedule
from schedule_grpc.domain.models import Task
from schedule_grpc.scheduling.firing import Occurrence, catch_up
from schedule_grpc.scheduling.jobs import FIRE_REF
from schedule_grpc.scheduling.parts import GuardedScheduler
from schedule_grpc.scheduling.trigger import CronTaskTrigger
from schedule_grpc.store.tasks import TaskStore

log = logging.getLogger(__name__)

_PAGE = 1000
# Catch-up rows one reconciliation writes at most (all tasks together); the rest follow in the next passes.
DEFAULT_MAX_CATCHUP_ROWS = 20_000

HandOn = Callable[[list[Occurrence], Mapping[str, datetime]], None]


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconciliation changed."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    caught_up: int = 0  # occurrences handed on because their instant had passed
    deferred: int = 0  # tasks whose catch-up waits for the next pass (the pass's row budget was spent)

    def __add__(self, other: ReconcileResult) -> ReconcileResult:
        return ReconcileResult(
            self.added + other.added,
            self.changed + other.changed,
            self.removed + other.removed,
            self.caught_up + other.caught_up,
            self.deferred + other.deferred,
        )


class Reconciler:
    """Derives jobs from tasks. Runs under the scheduler's pass lock, so it never races a pass.

    ``horizon``: only tasks whose next run is before now + horizon get a job (see the module doc).
    """

    def __init__(
        self,
        scheduler: GuardedScheduler,
        tasks: TaskStore,
        hand_on: HandOn,
        clock: Clock,
        *,
        horizon: timedelta = timedelta(minutes=3),
        max_catchup_rows: int = DEFAULT_MAX_CATCHUP_ROWS,
    ) -> None:
        self._scheduler = scheduler
        self._tasks = tasks
        self._hand_on = hand_on
        self._clock = clock
        self._horizon = horizon
        self._max_catchup_rows = max_catchup_rows
        self._budget = max_catchup_rows  # catch-up rows this pass may still write

    def full(self) -> ReconcileResult:
        """Every task due within the horizon against every job; other jobs are removed.

        Tasks are read a page at a time and each page applied at once, so memory stays bounded by a
        page however many tasks are due; the job writes of the whole pass go out in one transaction.
        """
        # Tasks are read under the lock too: a pass may move next_run meanwhile.
        with self._scheduler.lock, self._scheduler.batched():
            self._budget = self._max_catchup_rows
            jobs = {job.id: job for job in self._scheduler.get_jobs()}
            result = ReconcileResult()
            until = self._clock.now() + self._horizon
            after: str | None = None
            while True:
                page = self._tasks.due_before(until, limit=_PAGE, after_name=after)
                if page:
                    result += self._apply(page, jobs)
                if len(page) < _PAGE:
                    break
                after = page[-1].name
            removed = sum(self._remove(job) for job in jobs.values())  # disabled, deleted or beyond the horizon
        result += ReconcileResult(removed=removed)
        self._log(result)
        return result

    def one(self, name: str) -> ReconcileResult | None:
        """The task called ``name``; None when it no longer exists (a full pass finds its job)."""
        with self._scheduler.lock:
            task = self._tasks.get(name)
            if task is None:
                return None
            job = self._scheduler.get_job(task.id)
            self._budget = self._max_catchup_rows
            result = self._apply([task], {job.id: job} if job else {})
        self._log(result)
        return result

    def _apply(self, tasks: Iterable[Task], jobs: dict[str, Job]) -> ReconcileResult:
        """Aligns the jobs of ``tasks`` (taking them out of ``jobs``), catching up what was missed."""
        now = self._clock.now()
        until = now + self._horizon
        occurrences: list[Occurrence] = []
        next_runs: dict[str, datetime] = {}
        wanted: list[tuple[Task, CronTaskTrigger, datetime, Job | None]] = []
        removed = deferred = 0
        for task in tasks:
            job = jobs.pop(task.id, None)
            if not task.enabled:
                removed += self._remove(job)
                continue
            schedule = CronSchedule.parse(task.schedule, task.timezone)
            nxt = task.next_run
            if nxt is None:
                nxt = next_runs[task.id] = schedule.next_after(now)
            elif nxt <= now:
                if self._budget <= 0:  # this pass wrote its share: the next one goes on from next_run
                    removed += self._remove(job)
                    deferred += 1
                    continue
                found, nxt = catch_up(schedule, task.id, nxt, now, task.catchup_window)
                if len(found) > self._budget:
                    found = found[: self._budget]
                    nxt = schedule.next_after(found[-1].scheduled_for)  # still in the past: resumed next pass
                occurrences.extend(found)
                self._budget -= len(found)
                next_runs[task.id] = nxt
                if nxt <= now:
                    removed += self._remove(job)
                    deferred += 1
                    continue
            if nxt >= until:  # beyond the horizon: no job until a full reconciliation brings it in
                removed += self._remove(job)
                continue
            wanted.append((task, CronTaskTrigger(task.schedule, task.timezone), nxt, job))
        if occurrences or next_runs:
            self._hand_on(occurrences, next_runs)  # before the jobs move on, as in a pass
        added = changed = 0
        for task, trigger, nxt, job in wanted:
            if job is None:
                self._scheduler.add_job(
                    FIRE_REF,
                    trigger=trigger,
                    id=task.id,
                    name=task.name,
                    args=[task.id],
                    next_run_time=nxt,
                    misfire_grace_time=None,  # lateness is judged by the catch-up window, not dropped
                    coalesce=False,
                    max_instances=1,
                    replace_existing=True,
                )
                added += 1
            elif job.trigger != trigger or job.next_run_time != nxt:
                job.modify(trigger=trigger, next_run_time=nxt)
                changed += 1
        return ReconcileResult(added, changed, removed, len(occurrences), deferred)

    @staticmethod
    def _log(result: ReconcileResult) -> None:
        if result.added or result.changed or result.removed or result.caught_up or result.deferred:
            log.info(
                "reconciled",
                extra={
                    "added": result.added,
                    "changed": result.changed,
                    "removed": result.removed,
                    "caught_up": result.caught_up,
                    "catch_up_deferred": result.deferred,
                },
            )

    def _remove(self, job: Job | None) -> int:
        if job is None:
            return 0
        try:
            self._scheduler.remove_job(job.id)
        except JobLookupError:
            return 0
        return 1
