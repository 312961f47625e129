"""Keeps history bounded: executions, dead letters and execution events older than their retention.

Deletion goes in batches of ``batch_size`` rows, one short transaction each, so writers are never
blocked for long; one run deletes at most ``max_batches`` batches per table and the next run continues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from schedule_grpc.domain.caller import Caller
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.errors import AlreadyExists
from schedule_grpc.domain.models import Task
from schedule_grpc.domain.validation import NewTask
from schedule_grpc.handlers.maintenance import TASK_NAME as TASK_NAME  # the task is named after its handler
from schedule_grpc.settings import Settings
from schedule_grpc.usecases.ports import EventDeletion, HistoryDeletion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of history is kept, and how much one run may delete."""

    executions: timedelta = timedelta(days=90)
    dead_letters: timedelta = timedelta(days=90)
    events: timedelta = timedelta(days=7)
    batch_size: int = 1000
    max_batches: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            executions=timedelta(days=settings.execution_retention_days),
            dead_letters=timedelta(days=settings.dead_letter_retention_days),
            events=timedelta(days=settings.event_retention_days),
            batch_size=settings.retention_batch_size,
            max_batches=settings.retention_max_batches,
        )


@dataclass
class RetentionReport:
    """What one run deleted, by table; ``complete`` is false when it stopped at max_batches."""

    task_executions: int = 0
    dead_letters: int = 0
    execution_events: int = 0
    complete: bool = True


class Retention:
    """Runs the deletions; ``on_deleted(table, rows)`` reports each batch (the metrics count them)."""

    def __init__(
        self,
        store: HistoryDeletion,
        events: EventDeletion,
        policy: RetentionPolicy,
        clock: Clock,
        on_deleted: Callable[[str, int], None] = lambda table, rows: None,
    ) -> None:
        self._store = store
        self._events = events
        self._policy = policy
        self._clock = clock
        self._on_deleted = on_deleted

    def run(self) -> RetentionReport:
        now = self._clock.now()
        policy = self._policy
        report = RetentionReport()
        # each table has max_batches per run, so a large backlog in one never starves the others
        budget = dict.fromkeys(("task_executions", "dead_letters", "execution_events"), policy.max_batches)

        def drain(table: str, delete_batch: Callable[[], int]) -> int:
            total = 0
            while budget[table] > 0:
                budget[table] -= 1
                deleted = delete_batch()
                if deleted:
                    self._on_deleted(table, deleted)
                total += deleted
                if deleted < policy.batch_size:
                    return total
            report.complete = False
            return total

        overrides = self._store.task_retentions()
        for task_id, keep in overrides.items():
            cutoff = now - keep
            report.task_executions += drain(
                "task_executions",
                partial(self._store.delete_executions, cutoff, batch=policy.batch_size, task_id=task_id),
            )
        report.task_executions += drain(
            "task_executions",
            lambda: self._store.delete_executions(
                now - policy.executions, batch=policy.batch_size, except_tasks=overrides.keys()
            ),
        )
        report.dead_letters = drain(
            "dead_letters", lambda: self._store.delete_dead_letters(now - policy.dead_letters, batch=policy.batch_size)
        )

        def delete_events() -> int:
            return self._events.delete_before(now - policy.events, batch=policy.batch_size)

        report.execution_events = drain("execution_events", delete_events)
        log.info(
            "retention run finished",
            extra={
                "deleted_executions": report.task_executions,
                "deleted_dead_letters": report.dead_letters,
                "deleted_events": report.execution_events,
                "complete": report.complete,
            },
        )
        return report


def maintenance_task(schedule: str) -> NewTask:
    """The built-in task that runs the retention (installed at start-up when a schedule is set)."""
    return NewTask(
        name=TASK_NAME,
        schedule=schedule,
        handler=TASK_NAME,
        metadata={"description": "Deletes executions, dead letters and events past their retention"},
    )


def install_maintenance_task(register: Callable[[Caller | None, NewTask], object], schedule: str) -> bool:
    """Registers the built-in task, as the service itself (no owner), unless it exists (any replica may try);
    whether it was added. ``register`` is ``Tasks.register``."""
    if not schedule:
        return False
    try:
        register(None, maintenance_task(schedule))
    except AlreadyExists:
        return False
    log.info("installed the built-in retention task", extra={"task_name": TASK_NAME, "schedule": schedule})
    return True


def check_maintenance_task(get: Callable[[str], Task | None]) -> bool:
    """Whether the task named like the retention task is the service's own: the retention handler, and
    installed by the service (no owner). Says so loudly when it is not: retention would never run."""
    task = get(TASK_NAME)
    if task is None:
        return False
    if task.handler == TASK_NAME and task.owner is None:
        return True
    log.error(
        "the retention task's name is held by another task: executions, dead letters and events are NOT being "
        "deleted; an admin should unregister it (the next start installs the real one)",
        extra={"task_name": TASK_NAME, "handler": task.handler, "owner": task.owner},
    )
    return False
