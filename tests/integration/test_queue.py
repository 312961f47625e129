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
