"""What follows an attempt, by table; and the four kinds of execution rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from schedule_grpc.domain import lifecycle
from schedule_grpc.domain.lifecycle import Decision
from schedule_grpc.domain.models import (
    DeadLetter,
    ErrorCategory,
    Execution,
    ExecutionStatus,
    Outcome,
    OverlapPolicy,
    RetryPolicy,
    Task,
    Trigger,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DONE = T0 + timedelta(seconds=3)
S = timedelta(seconds=1)

TASK = Task(
    id="task_1",
    name="hook",
    schedule="@hourly",
    handler="http",
    enabled=True,
    metadata={},
    timezone="UTC",
    created_at=T0,
    updated_at=T0,
    retry_policy=RetryPolicy(),
    timeout=timedelta(seconds=30),
    overlap_policy=OverlapPolicy.SKIP,
)
CRITICAL = replace(TASK, critical=True)


def execution(trigger: Trigger = Trigger.SCHEDULE, attempt: int = 1) -> Execution:
    return Execution("exec_1", "task_1", "hook", trigger, T0, attempt, ExecutionStatus.RUNNING, T0, T0, started_at=T0)


def outcome(status: ExecutionStatus) -> Outcome:
    failed = status is ExecutionStatus.FAILED
    return Outcome(
        status, DONE, error="boom" if failed else None, error_category=ErrorCategory.NETWORK if failed else None
    )


SUCCESS, FAILED = outcome(ExecutionStatus.SUCCESS), outcome(ExecutionStatus.FAILED)


@pytest.mark.parametrize(
    ("name", "execution", "task", "outcome", "expected"),
    [
        ("success reports its alerts", execution(), TASK, SUCCESS, Decision(alerts=("reported",))),
        ("cancelled: nothing follows", execution(), TASK, outcome(ExecutionStatus.CANCELLED), Decision()),
        ("first failure retries after 1 s", execution(), TASK, FAILED, Decision(retry_at=DONE + S)),
        ("third failure retries after 4 s", execution(Trigger.RETRY, 3), TASK, FAILED, Decision(retry_at=DONE + 4 * S)),
        (
            "sixth failure is dead-lettered",
            execution(Trigger.RETRY, 6),
            TASK,
            FAILED,
            Decision(dead_letter=True, alerts=("dead_letter",)),
        ),
        (
            "a critical task alerts on its first failure",
            execution(),
            CRITICAL,
            FAILED,
            Decision(retry_at=DONE + S, alerts=("failure",)),
        ),
        (
            "a critical task's retries do not alert again",
            execution(Trigger.RETRY, 2),
            CRITICAL,
            FAILED,
            Decision(retry_at=DONE + 2 * S),
        ),
        ("a manual run is one attempt", execution(Trigger.MANUAL), TASK, FAILED, Decision()),
        ("a critical manual run alerts", execution(Trigger.MANUAL), CRITICAL, FAILED, Decision(alerts=("failure",))),
        (
            "no retries: dead letter at once",
            execution(),
            replace(TASK, retry_policy=RetryPolicy(max_retries=0)),
            FAILED,
            Decision(dead_letter=True, alerts=("dead_letter",)),
        ),
    ],
)
def test_decide(name: str, execution: Execution, task: Task, outcome: Outcome, expected: Decision) -> None:
    assert lifecycle.decide(execution, task, outcome) == expected


def test_decide_spreads_a_jittered_retry() -> None:
    task = replace(TASK, retry_policy=RetryPolicy(jitter=True))
    assert lifecycle.decide(execution(Trigger.RETRY, 3), task, FAILED, jitter=lambda d: d / 4).retry_at == DONE + S


def test_the_four_kinds_of_rows() -> None:
    scheduled = lifecycle.scheduled("task_1", "hook", T0, DONE)
    assert (scheduled.trigger, scheduled.attempt, scheduled.status, scheduled.due_at) == (
        Trigger.SCHEDULE,
        1,
        ExecutionStatus.PENDING,
        T0,
    )
    skipped = lifecycle.scheduled("task_1", "hook", T0, DONE, status=ExecutionStatus.SKIPPED, error="overlap")
    assert skipped.completed_at == DONE and skipped.error == "overlap"
    manual = lifecycle.manual(TASK, DONE)
    assert (manual.trigger, manual.scheduled_for, manual.status, manual.started_at) == (
        Trigger.MANUAL,
        DONE,
        ExecutionStatus.PENDING,
        None,
    )
    assert lifecycle.manual(TASK, DONE, running=True).started_at == DONE
    retry = lifecycle.retry_of(execution(Trigger.RETRY, 2), DONE + S, DONE)
    assert (retry.trigger, retry.attempt, retry.scheduled_for, retry.due_at) == (Trigger.RETRY, 3, T0, DONE + S)
    letter = DeadLetter("dlq_1", "exec_1", "task_1", "hook", T0, 6, "boom", ErrorCategory.NETWORK, DONE)
    again = lifecycle.redrive(letter, DONE)
    assert (again.trigger, again.attempt, again.scheduled_for, again.due_at) == (Trigger.RETRY, 7, T0, DONE)
    assert len({scheduled.id, manual.id, retry.id, again.id}) == 4
