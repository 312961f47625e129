"""An execution's life in one place: the rows that start one, and the decision after each attempt.

Four kinds of rows start an execution, each built by one function here: ``scheduled`` (the engine
fired an occurrence), ``manual`` (RunTaskNow), ``retry`` (a failed attempt's next one) and ``redrive``
(an operator queued a dead letter's occurrence again). After an attempt, ``decide`` says what follows:
success, a retry at an instant, or the dead-letter queue, and which alerts go out. It is pure; the
queue store applies it in the transaction that records the attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import backoff

from schedule_grpc.domain import retry
from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import DeadLetter, Execution, ExecutionStatus, Outcome, Task, Trigger

Alert = Literal["reported", "failure", "dead_letter"]
"""``reported``: the alerts a successful handler put in its result; ``failure``: a critical task failed;
``dead_letter``: an occurrence ran out of retries."""


@dataclass(frozen=True)
class Decision:
    """What follows an attempt: a retry due at ``retry_at``, a dead letter, and the alerts to send."""

    retry_at: datetime | None = None
    dead_letter: bool = False
    alerts: tuple[Alert, ...] = ()


def decide(
    execution: Execution,
    task: Task,
    outcome: Outcome,
    *,
    jitter: Callable[[float], float] = backoff.full_jitter,
) -> Decision:
    """What follows ``execution``'s attempt that ended as ``outcome``.

    A success sends the alerts its result reports. A failure of a scheduled, retried or redriven
    execution is retried after the task's backoff while retries remain, then dead-lettered (with an
    email); a manual run is one attempt. A critical task's failure alerts on its first attempt (a
    manual run's only one), not on each retry. Cancelled and skipped outcomes lead to nothing.
    """
    if outcome.status is ExecutionStatus.SUCCESS:
        return Decision(alerts=("reported",))
    if outcome.status is not ExecutionStatus.FAILED:
        return Decision()
    retried = retry.retries(execution.trigger)
    first_alert: tuple[Alert, ...] = ("failure",) if task.critical and (execution.attempt == 1 or not retried) else ()
    if not retried:
        return Decision(alerts=first_alert)
    delay = retry.next_delay(task.retry_policy, execution.attempt, jitter=jitter)
    if delay is None:
        return Decision(dead_letter=True, alerts=("dead_letter",))
    return Decision(retry_at=outcome.completed_at + delay, alerts=first_alert)


def scheduled(
    task_id: str,
    task_name: str,
    scheduled_for: datetime,
    now: datetime,
    *,
    status: ExecutionStatus = ExecutionStatus.PENDING,
    error: str | None = None,
) -> Execution:
    """The engine fired an occurrence: pending, or already skipped/missed with the reason in ``error``."""
    return Execution(
        id=new_id("exec"),
        task_id=task_id,
        task_name=task_name,
        trigger=Trigger.SCHEDULE,
        scheduled_for=scheduled_for,
        attempt=1,
        status=status,
        due_at=scheduled_for,
        created_at=now,
        completed_at=None if status is ExecutionStatus.PENDING else now,
        error=error,
    )


def manual(task: Task, now: datetime, *, running: bool = False) -> Execution:
    """A RunTaskNow: attempt 1 of the instant it was asked for; ``running`` when run in the caller's thread."""
    return Execution(
        id=new_id("exec"),
        task_id=task.id,
        task_name=task.name,
        trigger=Trigger.MANUAL,
        scheduled_for=now,
        attempt=1,
        status=ExecutionStatus.RUNNING if running else ExecutionStatus.PENDING,
        due_at=now,
        created_at=now,
        started_at=now if running else None,
    )


def retry_of(failed: Execution, due_at: datetime, now: datetime) -> Execution:
    """The next attempt of ``failed``'s occurrence, due at ``due_at``."""
    return Execution(
        id=new_id("exec"),
        task_id=failed.task_id,
        task_name=failed.task_name,
        trigger=Trigger.RETRY,
        scheduled_for=failed.scheduled_for,
        attempt=failed.attempt + 1,
        status=ExecutionStatus.PENDING,
        due_at=due_at,
        created_at=now,
    )


def redrive(letter: DeadLetter, now: datetime) -> Execution:
    """One more attempt of a dead letter's occurrence, due now (it counts as a retry of that occurrence)."""
    return Execution(
        id=new_id("exec"),
        task_id=letter.task_id,
        task_name=letter.task_name,
        trigger=Trigger.RETRY,
        scheduled_for=letter.scheduled_for,
        attempt=letter.attempts + 1,
        status=ExecutionStatus.PENDING,
        due_at=now,
        created_at=now,
    )
