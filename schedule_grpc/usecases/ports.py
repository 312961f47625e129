"""What the use cases need from the stores and the executor: one small interface per need.

The concrete classes (``schedule_grpc.store.*``, ``schedule_grpc.execution.executor.Executor``,
``schedule_grpc.handlers.registry.HandlerRegistry``) satisfy these structurally, without importing this
module: the composition root hands them to the use cases, and ``mypy --strict`` checks that they fit.
``tests/fakes.py`` holds an in-memory implementation of each, for the use cases' unit tests.

Each method is documented here once, with the semantics the use cases rely on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from schedule_grpc.domain.audit import AuditEntry, AuditFilter
from schedule_grpc.domain.history import HistoryFilter, HistoryKey
from schedule_grpc.domain.models import DeadLetter, Execution, Outcome, Task
from schedule_grpc.handlers.base import Handler

# --- tasks ---------------------------------------------------------------------------------------


class TaskLookup(Protocol):
    def get(self, name: str) -> Task | None:
        """The task named ``name`` as stored; None when there is none."""
        ...


class TaskCatalog(TaskLookup, Protocol):
    def list(self, *, limit: int, after_name: str | None = None) -> Sequence[Task]:
        """Up to ``limit`` tasks in name order, after ``after_name`` when given."""
        ...


class TaskWrites(Protocol):
    def usage(self, owner: str | None) -> tuple[int, int]:
        """How many tasks ``owner`` (None: made while open) has, and the bytes of their metadata as JSON."""
        ...

    def insert(self, task: Task) -> Task:
        """Stores a new task; AlreadyExists when its name is taken (names are unique)."""
        ...

    def set_enabled(self, name: str, *, enabled: bool, next_run: datetime | None, now: datetime) -> Task | None:
        """Enables or disables the task and sets its next run; the task as stored after, None when absent."""
        ...

    def set_last_run(self, task_id: str, last_run: datetime) -> None:
        """Records the start of the task's latest execution (never moves backwards)."""
        ...

    def delete(self, name: str, *, now: datetime | None = None) -> Task | None:
        """Deletes the task and returns it (None when absent); its pending executions are cancelled with
        it, at ``now``. Its other executions and its dead letters stay, readable by the task's name."""
        ...


class TaskRecords(TaskCatalog, TaskWrites, Protocol):
    """Everything ``Tasks`` reads and writes of the tasks table."""


# --- executions ----------------------------------------------------------------------------------


class ExecutionReads(Protocol):
    def get(self, execution_id: str) -> Execution | None:
        """One execution as it stands; None when there is none."""
        ...

    def page(
        self, selector: HistoryFilter, *, limit: int, task_name: str | None = None, after: HistoryKey | None = None
    ) -> Sequence[Execution]:
        """Up to ``limit`` executions matching ``selector`` (of the task named ``task_name`` when given, also
        after it was deleted), newest first by (created_at, id), strictly older than ``after`` when given."""
        ...


class ManualRecords(Protocol):
    """How a manual run is recorded when it runs in the calling thread (no executor)."""

    def insert(self, execution: Execution) -> Execution:
        """Stores a new execution row as it is given (the in-thread run inserts it running)."""
        ...

    def finish(self, execution_id: str, outcome: Outcome) -> Execution | None:
        """Records how a running execution ended; None when it no longer runs (cancelled, deleted)."""
        ...


class ExecutionRecords(ExecutionReads, ManualRecords, Protocol):
    """Everything ``Tasks`` reads and writes of the executions table."""


class TaskQueue(Protocol):
    """The queue of executions as ``Tasks`` uses it."""

    def enqueue(self, execution: Execution) -> Execution:
        """Stores a pending execution and wakes the executors of every replica."""
        ...

    def cancel_task(self, task_id: str, *, now: datetime, reason: str, running: bool) -> list[Execution]:
        """Cancels the task's pending executions except manual runs (their callers wait for them) and, with
        ``running``, its running ones, saying ``reason``; returns them as they were before."""
        ...


class Cancellations(Protocol):
    """The queue of executions as ``Executions`` uses it."""

    def owner(self, execution_id: str) -> tuple[bool, str | None]:
        """(whether the execution exists, the owner of its task: None when open or the task is gone)."""
        ...

    def cancel(self, execution_id: str, *, now: datetime) -> tuple[Execution | None, bool]:
        """Cancels a pending or running execution: (the execution as it now stands or None when there is
        none, whether this call changed it)."""
        ...


class DeadLetters(Protocol):
    def list(
        self, *, limit: int, before_id: str | None = None, task_id: str | None = None, task_name: str | None = None
    ) -> Sequence[DeadLetter]:
        """Up to ``limit`` dead letters, newest first (by id), older than ``before_id`` and of one task (by
        id or by name) when given."""
        ...

    def get(self, letter_id: str) -> DeadLetter | None:
        """One dead letter; None when there is none."""
        ...

    def redrive(self, letter_id: str, *, now: datetime) -> Execution | None:
        """Replaces the dead letter by a new pending attempt of its occurrence, due ``now``; None when absent."""
        ...

    def discard(self, letter_id: str) -> bool:
        """Deletes the dead letter (its failed executions stay in the history); False when absent."""
        ...


# --- the executor --------------------------------------------------------------------------------


class Runner(Protocol):
    """This replica's executor, as the use cases nudge it."""

    def wake(self) -> None:
        """Something may be due: claim now rather than at the next poll."""
        ...

    def cancel(self, execution_id: str) -> None:
        """Stops the handler of ``execution_id`` at once if it runs on this replica (its row is cancelled)."""
        ...


class WaitingRunner(Runner, Protocol):
    """The executor, as RunTaskNow waits for the outcome of the execution it queued."""

    def wait_finished(self, execution_id: str, timeout_s: float) -> bool:
        """Waits up to ``timeout_s`` until this replica recorded ``execution_id``; whether it did. A False
        may mean another replica runs it: the caller reads the row to know."""
        ...


# --- handlers ------------------------------------------------------------------------------------


class HandlerCatalog(Protocol):
    def get(self, name: str) -> Handler | None:
        """The handler named ``name``; None when none is installed."""
        ...

    def all(self) -> Sequence[Handler]:
        """Every installed handler, in the order ListHandlers shows them."""
        ...


# --- audit and retention -------------------------------------------------------------------------


class AuditRecords(Protocol):
    def insert(self, entry: AuditEntry) -> None:
        """Stores one entry."""
        ...

    def page(self, selector: AuditFilter, *, limit: int, after: HistoryKey | None) -> Sequence[AuditEntry]:
        """Up to ``limit`` entries matching ``selector``, newest first by (occurred_at, id), strictly older
        than ``after`` when given."""
        ...


class HistoryDeletion(Protocol):
    """What the retention deletes from the executions and dead-letter tables, in batches."""

    def task_retentions(self) -> dict[str, timedelta]:
        """task id -> how long its executions are kept, for the tasks that say so themselves."""
        ...

    def delete_executions(
        self,
        cutoff: datetime,
        *,
        batch: int,
        task_id: str | None = None,
        except_tasks: Collection[str] = (),
    ) -> int:
        """Deletes up to ``batch`` finished executions created before ``cutoff`` (of ``task_id`` when given,
        of no task in ``except_tasks``); how many it deleted."""
        ...

    def delete_dead_letters(self, cutoff: datetime, *, batch: int) -> int:
        """Deletes up to ``batch`` dead letters created before ``cutoff``; how many it deleted."""
        ...


class EventDeletion(Protocol):
    def delete_before(self, cutoff: datetime, *, batch: int) -> int:
        """Deletes up to ``batch`` execution events recorded before ``cutoff``; how many it deleted."""
        ...
