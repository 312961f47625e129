"""In-memory stores and executor for the use cases' unit tests.

Each class implements one interface of ``schedule_grpc.usecases.ports`` over a shared ``Memory`` with the
semantics the use cases rely on: unique task names (AlreadyExists), name order and newest-first paging,
pending executions cancelled with their task, dead letters redriven as pending attempts. The integration
tests keep checking the real stores against Postgres and SQLite.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schedule_grpc.domain import lifecycle
from schedule_grpc.domain.audit import AuditEntry, AuditFilter
from schedule_grpc.domain.errors import AlreadyExists
from schedule_grpc.domain.history import HistoryFilter, HistoryKey
from schedule_grpc.domain.models import DeadLetter, Execution, ExecutionStatus, Outcome, Task, Trigger

_LIVE = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


@dataclass
class Memory:
    """The rows of every table the use cases reach, by key."""

    tasks: dict[str, Task] = field(default_factory=dict)  # by name
    executions: dict[str, Execution] = field(default_factory=dict)  # by id
    dead_letters: dict[str, DeadLetter] = field(default_factory=dict)  # by id
    audit: list[AuditEntry] = field(default_factory=list)

    def task_by_id(self, task_id: str) -> Task | None:
        return next((t for t in self.tasks.values() if t.id == task_id), None)


class MemoryTasks:
    """The tasks table (``TaskRecords``)."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory

    def get(self, name: str) -> Task | None:
        return self._memory.tasks.get(name)

    def list(self, *, limit: int, after_name: str | None = None) -> Sequence[Task]:
        names = sorted(n for n in self._memory.tasks if after_name is None or n > after_name)
        return [self._memory.tasks[n] for n in names[:limit]]

    def usage(self, owner: str | None) -> tuple[int, int]:
        mine = [t for t in self._memory.tasks.values() if t.owner == owner]
        return len(mine), sum(len(json.dumps(t.metadata)) for t in mine)

    def insert(self, task: Task) -> Task:
        if task.name in self._memory.tasks:
            raise AlreadyExists(f"task {task.name!r} already exists", reason="TASK_EXISTS")
        self._memory.tasks[task.name] = task
        return task

    def set_enabled(self, name: str, *, enabled: bool, next_run: datetime | None, now: datetime) -> Task | None:
        task = self._memory.tasks.get(name)
        if task is None:
            return None
        task = dataclasses.replace(task, enabled=enabled, next_run=next_run, updated_at=now)
        self._memory.tasks[name] = task
        return task

    def set_last_run(self, task_id: str, last_run: datetime) -> None:
        task = self._memory.task_by_id(task_id)
        if task is not None and (task.last_run is None or task.last_run < last_run):
            self._memory.tasks[task.name] = dataclasses.replace(task, last_run=last_run)

    def delete(self, name: str, *, now: datetime | None = None) -> Task | None:
        task = self._memory.tasks.pop(name, None)
        if task is None:
            return None
        for execution in list(self._memory.executions.values()):
            if execution.task_id == task.id and execution.status is ExecutionStatus.PENDING:
                self._memory.executions[execution.id] = dataclasses.replace(
                    execution,
                    status=ExecutionStatus.CANCELLED,
                    completed_at=now or task.updated_at,
                    error="cancelled: the task was unregistered",
                )
        return task


class MemoryExecutions:
    """The executions table as read and as a manual run records itself (``ExecutionRecords``)."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory

    def get(self, execution_id: str) -> Execution | None:
        return self._memory.executions.get(execution_id)

    def page(
        self, selector: HistoryFilter, *, limit: int, task_name: str | None = None, after: HistoryKey | None = None
    ) -> Sequence[Execution]:
        def matches(e: Execution) -> bool:
            return (
                (task_name is None or e.task_name == task_name)
                and (not selector.task_names or e.task_name in selector.task_names)
                and (not selector.statuses or e.status in selector.statuses)
                and (selector.start is None or e.created_at >= selector.start)
                and (selector.end is None or e.created_at < selector.end)
                and (after is None or HistoryKey(e.created_at, e.id) < after)
            )

        found = sorted(filter(matches, self._memory.executions.values()), key=lambda e: (e.created_at, e.id))
        return found[::-1][:limit]

    def insert(self, execution: Execution) -> Execution:
        self._memory.executions[execution.id] = execution
        return execution

    def finish(self, execution_id: str, outcome: Outcome) -> Execution | None:
        current = self._memory.executions.get(execution_id)
        if current is None or current.status is not ExecutionStatus.RUNNING:
            return None
        finished = dataclasses.replace(
            current,
            status=outcome.status,
            completed_at=outcome.completed_at,
            result=outcome.result,
            error=outcome.error,
            error_category=outcome.error_category,
            traceback=outcome.traceback,
        )
        self._memory.executions[execution_id] = finished
        return finished


class MemoryQueue:
    """The queue of executions (``TaskQueue`` and ``Cancellations``)."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory

    def enqueue(self, execution: Execution) -> Execution:
        self._memory.executions[execution.id] = execution
        return execution

    def cancel_task(self, task_id: str, *, now: datetime, reason: str, running: bool) -> list[Execution]:
        def cancels(e: Execution) -> bool:
            if e.task_id != task_id:
                return False
            if e.status is ExecutionStatus.PENDING:
                return e.trigger is not Trigger.MANUAL
            return running and e.status is ExecutionStatus.RUNNING

        cancelled = sorted(filter(cancels, self._memory.executions.values()), key=lambda e: e.id)
        for e in cancelled:
            when = "while running" if e.status is ExecutionStatus.RUNNING else "before it started"
            self._memory.executions[e.id] = dataclasses.replace(
                e, status=ExecutionStatus.CANCELLED, completed_at=now, error=f"cancelled {when}: {reason}"
            )
        return cancelled

    def owner(self, execution_id: str) -> tuple[bool, str | None]:
        execution = self._memory.executions.get(execution_id)
        if execution is None:
            return False, None
        task = self._memory.task_by_id(execution.task_id)
        return True, task.owner if task else None

    def cancel(self, execution_id: str, *, now: datetime) -> tuple[Execution | None, bool]:
        current = self._memory.executions.get(execution_id)
        if current is None or current.status not in _LIVE:
            return current, False
        when = "while running" if current.status is ExecutionStatus.RUNNING else "before it started"
        cancelled = dataclasses.replace(
            current, status=ExecutionStatus.CANCELLED, completed_at=now, error=f"cancelled {when}"
        )
        self._memory.executions[execution_id] = cancelled
        return cancelled, True


class MemoryDeadLetters:
    """The dead-letter table (``DeadLetters``)."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory

    def list(
        self, *, limit: int, before_id: str | None = None, task_id: str | None = None, task_name: str | None = None
    ) -> Sequence[DeadLetter]:
        found = [
            d
            for d in self._memory.dead_letters.values()
            if (before_id is None or d.id < before_id)
            and (task_id is None or d.task_id == task_id)
            and (task_name is None or d.task_name == task_name)
        ]
        return sorted(found, key=lambda d: d.id, reverse=True)[:limit]

    def get(self, letter_id: str) -> DeadLetter | None:
        return self._memory.dead_letters.get(letter_id)

    def redrive(self, letter_id: str, *, now: datetime) -> Execution | None:
        letter = self._memory.dead_letters.pop(letter_id, None)
        if letter is None:
            return None
        execution = lifecycle.redrive(letter, now)
        self._memory.executions[execution.id] = execution
        return execution

    def discard(self, letter_id: str) -> bool:
        return self._memory.dead_letters.pop(letter_id, None) is not None


class MemoryAudit:
    """The audit trail's table (``AuditRecords``)."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory

    def insert(self, entry: AuditEntry) -> None:
        self._memory.audit.append(entry)

    def page(self, selector: AuditFilter, *, limit: int, after: HistoryKey | None) -> Sequence[AuditEntry]:
        def matches(a: AuditEntry) -> bool:
            return (
                (not selector.task_name or a.task_name == selector.task_name)
                and (not selector.actor or a.actor == selector.actor)
                and (not selector.actions or a.action in selector.actions)
                and (selector.start is None or a.occurred_at >= selector.start)
                and (selector.end is None or a.occurred_at < selector.end)
                and (after is None or HistoryKey(a.occurred_at, a.id) < after)
            )

        found = sorted(filter(matches, self._memory.audit), key=lambda a: (a.occurred_at, a.id), reverse=True)
        return found[:limit]


class MemoryHistoryDeletion:
    """What the retention deletes (``HistoryDeletion`` and ``EventDeletion``; no events are kept here)."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory

    def task_retentions(self) -> dict[str, timedelta]:
        return {t.id: t.history_retention for t in self._memory.tasks.values() if t.history_retention is not None}

    def delete_executions(
        self, cutoff: datetime, *, batch: int, task_id: str | None = None, except_tasks: Collection[str] = ()
    ) -> int:
        old = sorted(
            (
                e
                for e in self._memory.executions.values()
                if e.created_at < cutoff
                and e.status not in _LIVE
                and (task_id is None or e.task_id == task_id)
                and e.task_id not in except_tasks
            ),
            key=lambda e: e.created_at,
        )[:batch]
        for e in old:
            del self._memory.executions[e.id]
        return len(old)

    def delete_dead_letters(self, cutoff: datetime, *, batch: int) -> int:
        old = sorted((d for d in self._memory.dead_letters.values() if d.created_at < cutoff), key=lambda d: d.id)
        for d in old[:batch]:
            del self._memory.dead_letters[d.id]
        return len(old[:batch])

    def delete_before(self, cutoff: datetime, *, batch: int) -> int:
        return 0


class RecordingExecutor:
    """This replica's executor (``WaitingRunner``): on ``wake`` it ends every pending execution with
    ``outcome`` (None: leaves them pending, as a busy executor would); remembers what it was told."""

    def __init__(self, memory: Memory, outcome: ExecutionStatus | None = ExecutionStatus.SUCCESS) -> None:
        self._memory = memory
        self.outcome = outcome
        self.wakes = 0
        self.cancelled: list[str] = []

    def wake(self) -> None:
        self.wakes += 1
        if self.outcome is None:
            return
        for e in list(self._memory.executions.values()):
            if e.status is ExecutionStatus.PENDING:
                self._memory.executions[e.id] = dataclasses.replace(
                    e, status=self.outcome, started_at=e.due_at, completed_at=e.due_at
                )

    def cancel(self, execution_id: str) -> None:
        self.cancelled.append(execution_id)

    def wait_finished(self, execution_id: str, timeout_s: float) -> bool:
        execution = self._memory.executions.get(execution_id)
        return execution is not None and execution.status.finished
