"""A replica paused with executions running: they are recovered by lease expiry, and when it resumes it
cannot record an outcome over them (the executor's record and renewal are conditional on its lease)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from schedule_grpc.domain.lifecycle import Decision
from schedule_grpc.domain.models import ExecutionStatus, OverlapPolicy, Trigger
from schedule_grpc.execution.runner import Attempt, replica_lost
from schedule_grpc.store import db as dbm
from schedule_grpc.store.queue import Finished, QueueStore
from schedule_grpc.store.tasks import TaskStore
from tests.support import NOW, make_execution, make_task

pytestmark = pytest.mark.postgres

LEASE = timedelta(seconds=30)


@pytest.fixture
def db(postgres_url: str) -> Iterator[Engine]:
    engine = dbm.make_engine(postgres_url)
    yield engine
    engine.dispose()


def test_a_resumed_replica_records_nothing_over_an_execution_recovered_from_it(db: Engine) -> None:
    task = TaskStore(db).insert(dataclasses.replace(make_task("paused"), overlap_policy=OverlapPolicy.ALLOW))
    queue = QueueStore(db)
    queue.enqueue(make_execution(task, Trigger.SCHEDULE, NOW))
    [claimed] = queue.claim(owner="paused-replica", now=NOW, lease=LEASE, limit=1)

    # the replica is paused past its lease: another replica's executor recovers the execution (and retries it)
    later = NOW + timedelta(minutes=3)
    [recovered] = queue.recover(
        now=later,
        limit=10,
        decide=lambda c, o: Decision(retry_at=later),
        outcome=lambda x: replica_lost(x.lease_owner, x.lease_expires_at).at(later),
    )
    assert recovered.retry is not None
    [retry] = queue.claim(owner="other-replica", now=later, lease=LEASE, limit=1)
    assert retry.execution.id == recovered.retry.id

    # the paused replica resumes: its renewal keeps nothing, and its late success is not recorded
    resumed = later + timedelta(seconds=1)
    assert queue.renew(owner="paused-replica", ids=[claimed.execution.id], now=resumed, lease=LEASE) == set()
    assert queue.taken(owner="paused-replica", ids=[claimed.execution.id]) == {claimed.execution.id}
    late = Attempt(ExecutionStatus.SUCCESS).at(resumed)
    assert queue.record("paused-replica", [Finished(claimed, late, Decision())]) == [None]

    with db.connect() as conn:
        found = conn.execute(
            text("SELECT id, status, error, attempt FROM task_executions WHERE task_id = :t ORDER BY attempt"),
            {"t": task.id},
        ).all()
    assert [(r.status, r.attempt) for r in found] == [("failed", 1), ("running", 2)]
    assert found[0].error.startswith("lost: the replica running it (paused-replica) stopped renewing its lease")


def test_a_lost_replicas_execution_of_an_unregistered_task_is_cancelled_not_retried(db: Engine) -> None:
    tasks = TaskStore(db)
    task = tasks.insert(make_task("gone"))
    queue = QueueStore(db)
    queue.enqueue(make_execution(task, Trigger.SCHEDULE, NOW))
    queue.claim(owner="lost-replica", now=NOW, lease=LEASE, limit=1)
    assert tasks.delete("gone", now=NOW) is not None  # a running execution is left to finish

    later = NOW + timedelta(minutes=3)
    recovered = queue.recover(
        now=later,
        limit=10,
        decide=lambda c, o: Decision(retry_at=later),
        outcome=lambda x: replica_lost(x.lease_owner, x.lease_expires_at).at(later),
    )

    assert recovered == []  # no retry, no dead letter for a task that is gone
    with db.connect() as conn:
        found = conn.execute(text("SELECT status, error FROM task_executions WHERE task_id = :t"), {"t": task.id}).all()
    assert [r.status for r in found] == ["cancelled"]
    assert "unregistered" in found[0].error
