"""Keeps APScheduler's job store in step with the tasks table (the source of truth), with catch-up."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError

from schedule_grpc.clock import Clock
from schedule_grpc.cron import CronSchedule
from schedule_grpc.engine.jobs import FIRE_REF
from schedule_grpc.engine.parts import GuardedScheduler
from schedule_grpc.engine.trigger import CronTaskTrigger
from schedule_grpc.firing import Occurrence, catch_up
from schedule_grpc.models import Task
from schedule_grpc.store.tasks import TaskStore

log = logging.getLogger(__name__)

_PAGE = 1000

HandOn = Callable[[list[Occurrence], Mapping[str, datetime]], None]


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconciliation changed."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    caught_up: int = 0  # occurrences handed on because their instant had passed


class Reconciler:
    """Derives jobs from tasks. Runs under the scheduler's pass lock, so it never races a pass."""

    def __init__(self, scheduler: GuardedScheduler, tasks: TaskStore, hand_on: HandOn, clock: Clock) -> None:
        self._scheduler = scheduler
        self._tasks = tasks
        self._hand_on = hand_on
        self._clock = clock

    def full(self) -> ReconcileResult:
        """Every task against every job; jobs without an enabled task are removed."""
        with self._scheduler.lock:  # tasks are read under the lock too: a pass may move next_run meanwhile
            jobs = {job.id: job for job in self._scheduler.get_jobs()}
            return self._apply(self._all_tasks(), jobs, remove_rest=True)

    def one(self, name: str) -> ReconcileResult | None:
        """The task called ``name``; None when it no longer exists (a full pass finds its job)."""
        with self._scheduler.lock:
            task = self._tasks.get(name)
            if task is None:
                return None
            job = self._scheduler.get_job(task.id)
            return self._apply([task], {job.id: job} if job else {}, remove_rest=False)

    def _all_tasks(self) -> list[Task]:
        found: list[Task] = []
        after: str | None = None
        while True:
            page = self._tasks.list(limit=_PAGE, after_name=after)
            found.extend(page)
            if len(page) < _PAGE:
                return found
            after = page[-1].name

    def _apply(self, tasks: Iterable[Task], jobs: dict[str, Job], *, remove_rest: bool) -> ReconcileResult:
        now = self._clock.now()
        occurrences: list[Occurrence] = []
        next_runs: dict[str, datetime] = {}
        wanted: list[tuple[Task, CronTaskTrigger, datetime, Job | None]] = []
        removed = 0
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
                found, nxt = catch_up(schedule, task.id, nxt, now, task.catchup_window)
                occurrences.extend(found)
                next_runs[task.id] = nxt
            wanted.append((task, CronTaskTrigger(task.schedule, task.timezone), nxt, job))
        if remove_rest:
            for job in jobs.values():
                removed += self._remove(job)
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
        result = ReconcileResult(added, changed, removed, len(occurrences))
        if added or changed or removed or occurrences:
            log.info(
                "reconciled",
                extra={"added": added, "changed": changed, "removed": removed, "caught_up": len(occurrences)},
            )
        return result

    def _remove(self, job: Job | None) -> int:
        if job is None:
            return 0
        try:
            self._scheduler.remove_job(job.id)
        except JobLookupError:
            return 0
        return 1
