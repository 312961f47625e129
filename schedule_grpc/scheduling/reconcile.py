"""Keeps the scheduler's entries in step with the tasks table (the source of truth), with catch-up.

Only the tasks due within a *horizon* (a few reconcile intervals) have an entry (an APScheduler job): with 100,000 tasks
spread over an hour the scheduler holds a few thousand jobs, not 100,000, so promotion time, memory
and each full reconciliation grow with the tasks due soon rather than with every task. A task beyond
the horizon lives only in the tasks table (its ``next_run`` kept there); a later full reconciliation,
which runs well inside the horizon, gives it an entry before its instant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.cron import CronSchedule
from schedule_grpc.domain.firing import Occurrence, catch_up
from schedule_grpc.domain.models import Task
from schedule_grpc.scheduling.apscheduler import Entry, TaskScheduler
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
    """Derives the scheduler's entries from tasks. Runs under the scheduler's pass lock, so it never races a pass.

    ``horizon``: only tasks whose next run is before now + horizon get an entry (see the module doc).
    """

    def __init__(
        self,
        scheduler: TaskScheduler,
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
        """Every task due within the horizon against every entry; other entries are dropped.

        Tasks are read a page at a time and each page applied at once, so memory stays bounded by a
        page however many tasks are due; the entry writes of the whole pass go out in one transaction.
        """
        # Tasks are read under the lock too: a pass may move next_run meanwhile.
        with self._scheduler.lock, self._scheduler.batched():
            self._budget = self._max_catchup_rows
            held = self._scheduler.entries()
            result = ReconcileResult()
            until = self._clock.now() + self._horizon
            after: str | None = None
            while True:
                page = self._tasks.due_before(until, limit=_PAGE, after_name=after)
                if page:
                    result += self._apply(page, held)
                if len(page) < _PAGE:
                    break
                after = page[-1].name
            removed = sum(self._drop(entry) for entry in held.values())  # disabled, deleted or beyond the horizon
        result += ReconcileResult(removed=removed)
        self._log(result)
        return result

    def one(self, name: str) -> ReconcileResult | None:
        """The task called ``name``; None when it no longer exists (a full pass finds its entry)."""
        with self._scheduler.lock:
            task = self._tasks.get(name)
            if task is None:
                return None
            entry = self._scheduler.entry(task.id)
            self._budget = self._max_catchup_rows
            result = self._apply([task], {entry.task_id: entry} if entry else {})
        self._log(result)
        return result

    def _apply(self, tasks: Iterable[Task], held: dict[str, Entry]) -> ReconcileResult:
        """Aligns the entries of ``tasks`` (taking them out of ``held``), catching up what was missed."""
        now = self._clock.now()
        occurrences: list[Occurrence] = []
        next_runs: dict[str, datetime] = {}
        wanted: list[tuple[Task, CronSchedule, datetime, Entry | None]] = []
        removed = deferred = 0
        for task in tasks:
            entry = held.pop(task.id, None)
            nxt = self._next_run(task, now, occurrences, next_runs) if task.enabled else None
            if nxt is None or nxt >= now + self._horizon:  # disabled, or beyond the horizon: no entry
                removed += self._drop(entry)
            elif nxt <= now:  # catch-up left for the next pass (this one's row budget is spent)
                removed += self._drop(entry)
                deferred += 1
            else:
                wanted.append((task, CronSchedule.parse(task.schedule, task.timezone), nxt, entry))
        if occurrences or next_runs:
            self._hand_on(occurrences, next_runs)  # before the entries move on, as in a pass
        added = changed = 0
        for task, schedule, nxt, entry in wanted:
            if entry is None:
                self._scheduler.put(task.id, task.name, schedule, nxt, exists=False)
                added += 1
            elif entry.schedule != schedule or entry.next_run != nxt:
                self._scheduler.put(task.id, task.name, schedule, nxt, exists=True)
                changed += 1
        return ReconcileResult(added, changed, removed, len(occurrences), deferred)

    def _next_run(
        self, task: Task, now: datetime, occurrences: list[Occurrence], next_runs: dict[str, datetime]
    ) -> datetime:
        """The task's next run (the tasks table's, unless unknown or passed): catches up what it passed.

        The instants caught up go to ``occurrences`` and a changed next run to ``next_runs``; a next run
        still in the past means the catch-up goes on in the next pass (the row budget was spent).
        """
        schedule = CronSchedule.parse(task.schedule, task.timezone)
        nxt = task.next_run
        if nxt is None:
            nxt = next_runs[task.id] = schedule.next_after(now)
        elif nxt <= now and self._budget > 0:
            found, nxt = catch_up(schedule, task.id, nxt, now, task.catchup_window)
            if len(found) > self._budget:
                found = found[: self._budget]
                nxt = schedule.next_after(found[-1].scheduled_for)  # still in the past: resumed next pass
            occurrences.extend(found)
            self._budget -= len(found)
            next_runs[task.id] = nxt
        return nxt

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

    def _drop(self, entry: Entry | None) -> int:
        return 1 if entry is not None and self._scheduler.drop(entry.task_id) else 0
