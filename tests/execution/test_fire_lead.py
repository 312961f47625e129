"""The fire lead through a real replica: an execution claimed ahead of its instant is held, starts at the
instant and not before, is not started when its task is disabled meanwhile, and is given back at shutdown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, timedelta

import grpc
import pytest
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica
from schedule_grpc.domain.models import Execution, ExecutionStatus
from schedule_grpc.store.executions import ExecutionStore
from tests.execution.conftest import enqueue_scheduled, start_replica
from tests.execution.remote import Receiver
from tests.execution.smtp import SmtpServer
from tests.support import FakeClock, eventually, register_task

LEAD_S = 5.0


@pytest.fixture
def ahead(database_url: str, clock: FakeClock, smtp: SmtpServer) -> Iterator[Replica]:
    svc = start_replica(database_url, clock, smtp, executor_lease_s=30.0, fire_lead_s=LEAD_S)
    yield svc
    svc.stop()


@pytest.fixture
def stub(ahead: Replica) -> Iterator[pb_grpc.ScheduleServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{ahead.port}") as channel:
        yield pb_grpc.ScheduleServiceStub(channel)


def row(svc: Replica, execution_id: str) -> Execution:
    found = ExecutionStore(svc.database).get(execution_id)
    assert found is not None
    return found


def in_status(svc: Replica, execution_id: str, *statuses: ExecutionStatus) -> Execution | None:
    """The execution once it is in one of ``statuses`` (for ``eventually``), else None."""
    found = row(svc, execution_id)
    return found if found.status in statuses else None


def held_by(svc: Replica, execution_id: str) -> bool:
    found = row(svc, execution_id)
    return found.status is ExecutionStatus.PENDING and found.lease_owner == svc.executor.owner


def test_an_execution_claimed_ahead_starts_at_its_instant_and_not_before(
    ahead: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    task = register_task(stub, "ahead", "async-post", metadata={"url": f"{receiver.url}/ok"})
    at = clock.now() + timedelta(seconds=3)
    execution = enqueue_scheduled(ahead, task.id, task.name, at)
    eventually(lambda: held_by(ahead, execution.id))
    time.sleep(0.3)  # several of the executor's polls (50 ms) while the injected clock stays before the instant
    assert execution.id not in receiver.arrived and row(ahead, execution.id).started_at is None

    # a remote call is begun a moment before its instant (the statement and the hand-over done by then), and
    # released on the lane's loop at the instant: the row says it starts at the instant
    clock.set(at - timedelta(milliseconds=50))
    ahead.executor.wake()
    begun = eventually(
        lambda: in_status(ahead, execution.id, ExecutionStatus.RUNNING, ExecutionStatus.SUCCESS, ExecutionStatus.FAILED)
    )
    assert begun.started_at == at
    done = eventually(lambda: in_status(ahead, execution.id, ExecutionStatus.SUCCESS))
    assert done.started_at == at and execution.id in receiver.arrived
    eventually(lambda: stub.GetTask(pb.GetTaskRequest(name="ahead")).task.last_run.ToDatetime(tzinfo=UTC) == at)


def test_a_task_disabled_while_its_execution_is_held_does_not_run_it(
    ahead: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    disabled = register_task(stub, "disabled", "async-post", metadata={"url": f"{receiver.url}/ok"})
    other = register_task(stub, "other", "async-post", metadata={"url": f"{receiver.url}/ok"})
    at = clock.now() + timedelta(seconds=3)
    dropped = enqueue_scheduled(ahead, disabled.id, disabled.name, at)
    kept = enqueue_scheduled(ahead, other.id, other.name, at)
    eventually(lambda: held_by(ahead, dropped.id) and held_by(ahead, kept.id))

    stub.DisableTask(pb.DisableTaskRequest(name="disabled"))
    clock.set(at)
    ahead.executor.wake()
    # both were held for the same instant: once the other one ran, the instant has been dealt with
    eventually(lambda: row(ahead, kept.id).status is ExecutionStatus.SUCCESS)
    cancelled = row(ahead, dropped.id)
    assert dropped.id not in receiver.arrived and kept.id in receiver.arrived
    assert cancelled.status is ExecutionStatus.CANCELLED and cancelled.started_at is None
    assert cancelled.error is not None and cancelled.error.startswith("cancelled before it started")


def test_a_replica_shutting_down_gives_its_held_executions_back(
    database_url: str, clock: FakeClock, smtp: SmtpServer, receiver: Receiver
) -> None:
    first = start_replica(database_url, clock, smtp, executor_lease_s=30.0, fire_lead_s=LEAD_S)
    with grpc.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        task = register_task(
            pb_grpc.ScheduleServiceStub(channel), "handed-back", "async-post", metadata={"url": f"{receiver.url}/ok"}
        )
    at = clock.now() + timedelta(seconds=3)
    execution = enqueue_scheduled(first, task.id, task.name, at)
    eventually(lambda: held_by(first, execution.id))
    first.stop()
    released = row(first, execution.id)
    assert released.status is ExecutionStatus.PENDING and released.lease_owner is None

    second = start_replica(database_url, clock, smtp, executor_lease_s=30.0, fire_lead_s=LEAD_S)
    try:
        eventually(lambda: held_by(second, execution.id))  # at once, not after the first one's lease
        clock.set(at)
        second.executor.wake()
        done = eventually(lambda: in_status(second, execution.id, ExecutionStatus.SUCCESS))
        assert done.lease_owner is None and execution.id in receiver.arrived
    finally:
        second.stop()
