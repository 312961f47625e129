"""The execution queue's claim order: a waiting RunTaskNow caller is not stuck behind a scheduled backlog."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from schedule_grpc.models import OverlapPolicy, Trigger
from schedule_grpc.store import db
from schedule_grpc.store.queue import QueueStore
from schedule_grpc.store.tasks import TaskStore
from tests.integration.test_store import NOW, _execution, _task


def test_a_manual_run_is_claimed_before_an_older_scheduled_backlog(database_url: str) -> None:
    engine = db.make_engine(database_url)
    task = TaskStore(engine).insert(dataclasses.replace(_task("busy"), overlap_policy=OverlapPolicy.ALLOW))
    queue = QueueStore(engine)
    backlog = [queue.enqueue(_execution(task, Trigger.SCHEDULE, NOW - timedelta(minutes=m))) for m in range(5, 0, -1)]
    manual = queue.enqueue(_execution(task, Trigger.MANUAL, NOW))
    lease = timedelta(seconds=30)

    [first] = queue.claim(owner="r1", now=NOW, lease=lease, limit=1)
    rest = queue.claim(owner="r1", now=NOW, lease=lease, limit=10)
    engine.dispose()

    assert first.execution.id == manual.id
    assert [c.execution.id for c in rest] == [x.id for x in backlog]  # then the backlog, oldest first
