"""Use cases of the execution queue: cancel an execution, list, redrive and discard dead letters.

Every method takes the caller first: ``None`` when the service runs open (no credentials).
"""

from __future__ import annotations

import dataclasses

from schedule_grpc.domain import caller as callers
from schedule_grpc.domain import tokens, validation
from schedule_grpc.domain.audit import AuditAction
from schedule_grpc.domain.caller import Caller
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from schedule_grpc.domain.models import DeadLetter, Execution, Page
from schedule_grpc.usecases.audit import AuditTrail
from schedule_grpc.usecases.ports import Cancellations, DeadLetters, Runner, TaskLookup

DEFAULT_DEAD_LETTER_PAGE = 100


class Executions:
    """Cancels executions and manages the dead-letter queue."""

    def __init__(
        self,
        queue: Cancellations,
        dead_letters: DeadLetters,
        tasks: TaskLookup,
        executor: Runner,
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

    def cancel(self, caller: Caller | None, execution_id: str) -> Execution:
        """Cancels a pending or running execution of a task ``caller`` may change; a running handler is stopped."""
        _id(execution_id, "execution_id")
        exists, owner = self._queue.owner(execution_id)
        if exists:
            callers.require_owner(caller, owner, f"execution {execution_id!r}")
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

    def dead_letters(
        self, caller: Caller | None, *, task_name: str, page_size: int, page_token: str
    ) -> Page[DeadLetter]:
        """Dead letters, newest first, of one task (by name) or all; errors for the task's owner and admins."""
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
        if not callers.is_service(caller):  # admins (and everyone while open) see every detail
            return Page(items, next_token)
        return Page([self._visible(caller, letter) for letter in items], next_token)

    def _visible(self, caller: Caller | None, letter: DeadLetter) -> DeadLetter:
        """The dead letter's error for the task's owner and admins only."""
        task = self._tasks.get(letter.task_name)
        if callers.may_see_details(caller, task.owner if task else None):
            return letter
        return dataclasses.replace(letter, error=None)

    def redrive(self, caller: Caller | None, letter_id: str) -> Execution:
        """Queues a new attempt of the dead letter's occurrence, due now, and removes the dead letter (admins)."""
        _admin(caller, "RedriveDeadLetter")
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
                caller,
                AuditAction.DEAD_LETTER_REDRIVEN,
                task_name=execution.task_name,
                task_id=execution.task_id,
                subject_id=execution.id,
            )
        self._executor.wake()
        return execution

    def discard(self, caller: Caller | None, letter_id: str) -> None:
        """Deletes the dead letter; its failed executions stay in the history (admins)."""
        _admin(caller, "DiscardDeadLetter")
        _id(letter_id, "id")
        letter = self._dead_letters.get(letter_id)
        if letter is None or not self._dead_letters.discard(letter_id):
            raise _letter_not_found(letter_id)
        if self._audit is not None:
            self._audit.record(
                caller,
                AuditAction.DEAD_LETTER_DISCARDED,
                task_name=letter.task_name,
                task_id=letter.task_id,
                subject_id=letter_id,
            )


def _admin(caller: Caller | None, what: str) -> None:
    """PermissionDenied for a ``service`` caller: dead letters are handled by admins (anyone while open).
    The API refuses such calls before they get here; the rule holds for any other way in too."""
    if callers.is_service(caller):
        raise PermissionDenied(f"{what} needs the admin role", reason="ADMIN_ONLY")


def _id(value: str, field: str) -> None:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > 64:
        raise InvalidArgument(field, "is at most 64 characters")


def _letter_not_found(letter_id: str) -> NotFound:
    return NotFound(f"dead letter {letter_id!r} not found", reason="DEAD_LETTER_NOT_FOUND")
