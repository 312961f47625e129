"""The execution queue: claim order (a waiting RunTaskNow caller is not stuck behind a scheduled backlog) and
batched recording."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from schedule_grpc.domain import lifecycle
from schedule_grpc.domain.models import ErrorCategory, ExecutionStatus, OverlapPolicy, Trigger
from schedule_grpc.execution.runner import Attempt
from schedule_grpc.store import db
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.queue import Claimed, Finished, QueueStore
from schedule_grpc.store.tasks import TaskStore
from tests.support import NOW, make_execution, make_task


def test_a_manual_run_is_claimed_before_an_older_scheduled_backlog(database_url: str) -> None:
    engine = db.make_engine(database_url)
    task = TaskStore(engine).insert(dataclasses.replace(make_task("busy"), overlap_policy=OverlapPolicy.ALLOW))
    queue = QueueStore(engine)
    backlog = [
        queue.enqueue(make_execution(task, Trigger.SCHEDULE, NOW - timedelta(minutes=m))) for m in range(5, 0, -1)
    ]
    manual = queue.enqueue(make_execution(task, Trigger.MANUAL, NOW))
    lease = timedelta(seconds=30)

    [first] = queue.claim(owner="r1", now=NOW, lease=lease, limit=1)
    rest = queue.claim(owner="r1", now=NOW, lease=lease, limit=10)
    engine.dispose()

    assert first.execution.id == manual.id
    assert [c.execution.id for c in rest] == [x.id for x in backlog]  # then the backlog, oldest first


def test_a_batch_records_each_outcome_with_its_follow_up_and_skips_what_was_cancelled(database_url: str) -> None:
    engine = db.make_engine(database_url)
    task = TaskStore(engine).insert(dataclasses.replace(make_task("batch"), overlap_policy=OverlapPolicy.ALLOW))
    queue = QueueStore(engine)
    for m in range(4):
        queue.enqueue(make_execution(task, Trigger.SCHEDULE, NOW - timedelta(minutes=m)))
    ok, failed, last, cancelled = queue.claim(owner="r1", now=NOW, lease=timedelta(seconds=30), limit=10)
    last = dataclasses.replace(last, execution=dataclasses.replace(last.execution, attempt=6))  # retries spent
    queue.cancel(cancelled.execution.id, now=NOW)
    done = NOW + timedelta(seconds=2)

    def finish(claimed: Claimed, attempt: Attempt) -> Finished:
        outcome = attempt.at(done)
        return Finished(claimed, outcome, lifecycle.decide(claimed.execution, claimed.task, outcome))

    failure = Attempt(ExecutionStatus.FAILED, error="boom", error_category=ErrorCategory.NETWORK)
    results = queue.record(
        "r1",
        [
            finish(ok, Attempt(ExecutionStatus.SUCCESS, result={"status": 200})),
            finish(failed, failure),
            finish(last, failure),
            finish(cancelled, Attempt(ExecutionStatus.SUCCESS)),
        ],
    )
    stored = {x.id: x for x in ExecutionStore(engine).history("batch", limit=10)}
    engine.dispose()

    first, second, third, fourth = results
    assert first is not None and first.execution.result == {"status": 200} and first.execution.duration_ms == 2000
    assert second is not None and second.retry is not None and second.retry.due_at == done + timedelta(seconds=1)
    assert stored[second.retry.id].status is ExecutionStatus.PENDING and stored[second.retry.id].attempt == 2
    assert third is not None and third.dead_letter_id is not None and third.retry is None
    assert fourth is None and stored[cancelled.execution.id].status is ExecutionStatus.CANCELLED
    assert stored[ok.execution.id].status is ExecutionStatus.SUCCESS and stored[failed.execution.id].error == "boom"


AHEAD = timedelta(seconds=5)


def test_a_claim_ahead_holds_what_is_due_later_and_begin_starts_it_at_its_instant(database_url: str) -> None:
    engine = db.make_engine(database_url)
    tasks = TaskStore(engine)
    task = tasks.insert(make_task("ahead"))  # overlap policy skip: must not overlap
    queue = QueueStore(engine)
    at = NOW + timedelta(seconds=2)
    execution = queue.enqueue(make_execution(task, Trigger.SCHEDULE, at))
    lease = timedelta(seconds=30)

    [held] = queue.claim(owner="r1", now=NOW, lease=lease, limit=10, until=NOW + AHEAD)
    stored = ExecutionStore(engine).get(execution.id)
    others = queue.claim(owner="r2", now=NOW, lease=lease, limit=10, until=NOW + AHEAD)
    # another run of the task is not started while the held one waits for its instant
    manual = queue.enqueue(make_execution(task, Trigger.MANUAL, NOW))
    blocked = queue.claim(owner="r2", now=NOW, lease=lease, limit=10)
    next_due = queue.next_due(NOW)
    begun = queue.begin(owner="r1", ids=[execution.id], now=at, lease=lease)
    queue.started({task.id}, at)
    started = ExecutionStore(engine).get(execution.id)
    last_run = tasks.get("ahead")
    engine.dispose()

    assert held.execution.id == execution.id and held.execution.status is ExecutionStatus.PENDING
    assert stored is not None and stored.status is ExecutionStatus.PENDING and stored.started_at is None
    assert stored.lease_owner == "r1"
    assert others == [] and blocked == []
    assert next_due == manual.due_at  # the held row is nobody's to wake for
    assert begun == {execution.id}
    assert started is not None and started.status is ExecutionStatus.RUNNING and started.started_at == at
    assert last_run is not None and last_run.last_run == at


def test_a_held_execution_cancelled_before_its_instant_is_not_begun(database_url: str) -> None:
    engine = db.make_engine(database_url)
    task = TaskStore(engine).insert(make_task("disabled-ahead"))
    queue = QueueStore(engine)
    execution = queue.enqueue(make_execution(task, Trigger.SCHEDULE, NOW + timedelta(seconds=2)))
    lease = timedelta(seconds=30)
    queue.claim(owner="r1", now=NOW, lease=lease, limit=10, until=NOW + AHEAD)

    queue.cancel_task(task.id, now=NOW + timedelta(seconds=1), reason="task disabled", running=False)
    begun = queue.begin(owner="r1", ids=[execution.id], now=NOW + timedelta(seconds=2), lease=lease)
    row = ExecutionStore(engine).get(execution.id)
    engine.dispose()

    assert begun == set()
    assert row is not None and row.status is ExecutionStatus.CANCELLED
    assert row.error == "cancelled before it started: task disabled" and row.started_at is None


def test_a_hold_whose_lease_expired_is_claimed_by_another_replica_and_never_begun_twice(database_url: str) -> None:
    engine = db.make_engine(database_url)
    task = TaskStore(engine).insert(make_task("lost-hold"))
    queue = QueueStore(engine)
    at = NOW + timedelta(seconds=2)
    execution = queue.enqueue(make_execution(task, Trigger.SCHEDULE, at))
    lease = timedelta(seconds=30)
    queue.claim(owner="r1", now=NOW, lease=lease, limit=10, until=NOW + AHEAD)  # then r1 stalls past its lease

    later = NOW + timedelta(seconds=31)
    [taken] = queue.claim(owner="r2", now=later, lease=lease, limit=10)
    begun = queue.begin(owner="r1", ids=[execution.id], now=later, lease=lease)
    row = ExecutionStore(engine).get(execution.id)
    engine.dispose()

    assert taken.execution.id == execution.id and taken.execution.status is ExecutionStatus.RUNNING
    assert begun == set()
    assert row is not None and row.lease_owner == "r2" and row.started_at == later


def test_released_holds_are_claimed_at_once_by_another_replica(database_url: str) -> None:
    engine = db.make_engine(database_url)
    task = TaskStore(engine).insert(make_task("released"))
    queue = QueueStore(engine)
    execution = queue.enqueue(make_execution(task, Trigger.SCHEDULE, NOW + timedelta(seconds=2)))
    lease = timedelta(seconds=30)
    queue.claim(owner="r1", now=NOW, lease=lease, limit=10, until=NOW + AHEAD)

    queue.release(owner="r1", ids=[execution.id])  # r1 shuts down before the instant
    [held] = queue.claim(owner="r2", now=NOW, lease=lease, limit=10, until=NOW + AHEAD)
    engine.dispose()

    assert held.execution.id == execution.id and held.execution.lease_owner == "r2"
