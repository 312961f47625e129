"""Use cases of the execution queue: cancel an execution, list, redrive and discard dead letters."""

from __future__ import annotations

import dataclasses

from schedule_grpc.domain import caller, tokens, validation
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from schedule_grpc.domain.models import DeadLetter, Execution, Page
from schedule_grpc.execution.executor import Executor
from schedule_grpc.store.dead_letters import DeadLetterStore
from schedule_grpc.store.queue import QueueStore
from schedule_grpc.store.tasks import TaskStore
from schedule_grpc.usecases.audit import AuditAction, AuditTrail

DEFAULT_DEAD_LETTER_PAGE = 100


class Executions:
    """Cancels executions and manages the dead-letter queue."""

    def __init__(
        self,
        queue: QueueStore,
        dead_letters: DeadLetterStore,
        tasks: TaskStore,
        executor: Executor,
        clock: Clock,
        *,
        audit: AuditTrail | None = None,
    ) -> None:
        self._queue = queue
        self._dead_letters = dead_letters
        self._tasks = tasks
        self._executor = executor
        self._clock = clock
        self._audit = audit

    def cancel(self, execution_id: str) -> Execution:
        """Cancels a pending or running execution; a running handler is stopped."""
        _id(execution_id, "execution_id")
        exists, owner = self._queue.owner(execution_id)
        if exists:
            caller.require_owner(owner, f"execution {execution_id!r}")
        execution, changed = self._queue.cancel(execution_id, now=self._clock.now())
        if execution is None:
            raise NotFound(f"execution {execution_id!r} not found", reason="EXECUTION_NOT_FOUND")
        if not changed:
            raise FailedPrecondition(
                f"execution {execution_id!r} is {execution.status.value}; "
                "only pending or running executions can be cancelled",
                reason="EXECUTION_FINISHED",
            )
        self._executor.cancel(execution_id)
        return execution

    def dead_letters(self, *, task_name: str, page_size: int, page_token: str) -> Page[DeadLetter]:
        size = validation.limit(page_size, "page_size", default=DEFAULT_DEAD_LETTER_PAGE)
        if task_name:  # by name: the dead letters of a deleted task stay listed until retention
            validation.name(task_name, "task_name")
        listing = f"dead-letters:{task_name}"
        items = self._dead_letters.list(
            limit=size + 1, before_id=tokens.decode(page_token, listing), task_name=task_name or None
        )
        if not items and task_name and self._tasks.get(task_name) is None:  # none yet, or no such task?
            raise NotFound(f"task {task_name!r} not found", reason="TASK_NOT_FOUND")
        more = len(items) > size
        items = items[:size]
        next_token = tokens.encode(listing, items[-1].id) if more else ""
        if not caller.is_service():  # admins (and everyone while open) see every detail
            return Page(items, next_token)
        return Page([self._visible(letter) for letter in items], next_token)

    def _visible(self, letter: DeadLetter) -> DeadLetter:
        """The dead letter's error for the task's owner and admins only."""
        task = self._tasks.get(letter.task_name)
        if caller.may_see_details(task.owner if task else None):
            return letter
        return dataclasses.replace(letter, error=None)

    def redrive(self, letter_id: str) -> Execution:
        """Queues a new attempt of the dead letter's occurrence, due now, and removes the dead letter."""
        _id(letter_id, "id")
        letter = self._dead_letters.get(letter_id)
        if letter is not None:
            task = self._tasks.get(letter.task_name)
            if task is None or task.id != letter.task_id:
                raise FailedPrecondition(
                    f"task {letter.task_name!r} of dead letter {letter_id!r} was unregistered; discard it instead",
                    reason="TASK_UNREGISTERED",
                )
        execution = self._dead_letters.redrive(letter_id, now=self._clock.now())
        if execution is None:
            raise _letter_not_found(letter_id)
        if self._audit is not None:
            self._audit.record(
                AuditAction.DEAD_LETTER_REDRIVEN,
                task_name=execution.task_name,
                task_id=execution.task_id,
                subject_id=execution.id,
            )
        self._executor.wake()
        return execution

    def discard(self, letter_id: str) -> None:
        _id(letter_id, "id")
        letter = self._dead_letters.get(letter_id)
        if letter is None or not self._dead_letters.discard(letter_id):
            raise _letter_not_found(letter_id)
        if self._audit is not None:
            self._audit.record(
                AuditAction.DEAD_LETTER_DISCARDED,
                task_name=letter.task_name,
                task_id=letter.task_id,
                subject_id=letter_id,
            )


def _id(value: str, field: str) -> None:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > 64:
        raise InvalidArgument(field, "is at most 64 characters")


def _letter_not_found(letter_id: str) -> NotFound:
    return NotFound(f"dead letter {letter_id!r} not found", reason="DEAD_LETTER_NOT_FOUND")
