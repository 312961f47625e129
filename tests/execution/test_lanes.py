"""The two lanes through a real replica: remote calls in flight together, timeouts, cancellation,
shutdown, and fairness between task owners in both lanes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc
from sqlalchemy import update

from schedule_grpc.app import Replica
from schedule_grpc.domain.models import ErrorCategory, ExecutionStatus, Trigger
from schedule_grpc.execution.remote_lane import RemoteLane
from schedule_grpc.execution.runner import Attempt
from schedule_grpc.handlers.base import HandlerContext
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.handler_data import HANDLER_DATA
from schedule_grpc.store.tables import scheduled_tasks
from tests.execution.conftest import enqueue_scheduled, history, start_replica
from tests.execution.remote import AsyncPost, Receiver
from tests.execution.smtp import SmtpServer
from tests.support import FakeClock, eventually, register_task

NO_RETRY = pb.RetryPolicy(max_retries=0)


@pytest.fixture
def lanes(database_url: str, clock: FakeClock, smtp: SmtpServer) -> Iterator[Replica]:
    svc = start_replica(database_url, clock, smtp)
    yield svc
    svc.stop()


@pytest.fixture
def stub(lanes: Replica) -> Iterator[pb_grpc.ScheduleServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{lanes.port}") as channel:
        yield pb_grpc.ScheduleServiceStub(channel)


def owned_by(svc: Replica, task: pb.Task, owner: str) -> None:
    with svc.database.begin() as conn:
        conn.execute(update(scheduled_tasks).where(scheduled_tasks.c.id == task.id).values(owner=owner))


def statuses(svc: Replica, names: list[str]) -> list[ExecutionStatus]:
    return [x.status for name in names for x in history(svc, name)]


def test_remote_calls_are_all_in_flight_at_once_and_succeed(
    lanes: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    names = [f"hook-{i}" for i in range(40)]
    # each call is held long enough for all 40 to be queued, even on a loaded machine
    tasks = [register_task(stub, name, "async-post", metadata={"url": f"{receiver.url}/hold/5"}) for name in names]
    for task in tasks:
        enqueue_scheduled(lanes, task.id, task.name, clock.now())
    eventually(lambda: statuses(lanes, names).count(ExecutionStatus.SUCCESS) == 40, timeout_s=60)
    # with four worker processes they would arrive four at a time; on the event loop they are held together
    assert receiver.max_in_flight == 40
    assert all(x.result == 200 and x.trigger is Trigger.SCHEDULE for n in names for x in history(lanes, n))


def test_an_outcome_on_an_idle_replica_is_recorded_at_once_and_a_burst_of_them_all_are(
    lanes: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    # The recorder sleeps until an outcome arrives: a lone one wakes it (no waiting for a batch to fill) ...
    assert lanes.executor is not None
    lone = register_task(stub, "lone-hook", "async-post", metadata={"url": f"{receiver.url}/hook"})
    execution = enqueue_scheduled(lanes, lone.id, lone.name, clock.now())
    eventually(lambda: execution.id in receiver.arrived)
    arrived = time.monotonic()
    assert lanes.executor.wait_finished(execution.id, 5)
    assert time.monotonic() - arrived < 1.0
    assert [x.status for x in history(lanes, lone.name)] == [ExecutionStatus.SUCCESS]
    # ... and outcomes handed over while it records a batch are all taken with the next one.
    names = [f"burst-hook-{i}" for i in range(60)]
    tasks = [register_task(stub, name, "async-post", metadata={"url": f"{receiver.url}/hook"}) for name in names]
    ids = [enqueue_scheduled(lanes, task.id, task.name, clock.now()).id for task in tasks]
    assert all(lanes.executor.wait_finished(id_, 30) for id_ in ids)
    assert statuses(lanes, names) == [ExecutionStatus.SUCCESS] * 60


def test_a_remote_call_past_its_timeout_fails_as_timeout_and_is_retried(
    lanes: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    timeout = duration_pb2.Duration(nanos=300_000_000)
    task = register_task(stub, "slow-hook", "async-post", metadata={"url": f"{receiver.url}/hold/30"}, timeout=timeout)
    enqueue_scheduled(lanes, task.id, task.name, clock.now())
    retry = eventually(lambda: [x for x in history(lanes, task.name) if x.attempt == 2])[0]
    [first] = [x for x in history(lanes, task.name) if x.attempt == 1]
    assert first.status is ExecutionStatus.FAILED and first.error_category is ErrorCategory.TIMEOUT
    assert "timeout of 0.3s" in (first.error or "")
    assert retry.status is ExecutionStatus.PENDING and retry.trigger is Trigger.RETRY
    eventually(lambda: first.id in receiver.gone)  # the call was abandoned, not left open


def test_cancel_stops_a_remote_call_at_once(
    lanes: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    task = register_task(stub, "held-hook", "async-post", metadata={"url": f"{receiver.url}/hold/30"})
    execution = enqueue_scheduled(lanes, task.id, task.name, clock.now())
    eventually(lambda: execution.id in receiver.arrived)
    stub.CancelExecution(pb.CancelExecutionRequest(execution_id=execution.id))
    eventually(lambda: execution.id in receiver.gone, timeout_s=5)
    assert lanes.executor is not None and lanes.executor.wait_finished(execution.id, 5)
    [row] = history(lanes, task.name)
    assert row.status is ExecutionStatus.CANCELLED and row.error == "cancelled while running"


def test_shutdown_stops_remote_calls_records_them_and_closes_the_handlers(
    database_url: str, clock: FakeClock, smtp: SmtpServer, receiver: Receiver
) -> None:
    svc = start_replica(database_url, clock, smtp, shutdown_grace_s=0.2)
    with grpc.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
        url = f"{receiver.url}/hold/30"
        task = register_task(
            pb_grpc.ScheduleServiceStub(channel), "held", "async-post", metadata={"url": url}, retry_policy=NO_RETRY
        )
    execution = enqueue_scheduled(svc, task.id, task.name, clock.now())
    eventually(lambda: execution.id in receiver.arrived)
    closed = AsyncPost.closed
    svc.stop()
    assert AsyncPost.closed == closed + 1
    row = ExecutionStore(svc.database).get(execution.id)
    assert row is not None and row.status is ExecutionStatus.FAILED and "shut down" in (row.error or "")


def test_wait_finished_waits_for_that_execution(
    lanes: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    assert lanes.executor is not None
    slow = register_task(stub, "slow", "async-post", metadata={"url": f"{receiver.url}/hold/30"})
    fast = register_task(stub, "fast", "noop")
    held = enqueue_scheduled(lanes, slow.id, slow.name, clock.now())
    eventually(lambda: held.id in receiver.arrived)
    quick = enqueue_scheduled(lanes, fast.id, fast.name, clock.now())
    assert lanes.executor.wait_finished(quick.id, 30)
    assert ExecutionStore(lanes.database).get(quick.id).status is ExecutionStatus.SUCCESS  # type: ignore[union-attr]
    # another execution finishing does not end the wait for one still running
    assert not lanes.executor.wait_finished(held.id, 0.3)


def test_one_owners_hanging_webhooks_hold_only_their_share_of_the_remote_lane(
    database_url: str, clock: FakeClock, smtp: SmtpServer, receiver: Receiver
) -> None:
    svc = start_replica(database_url, clock, smtp, executor_remote_concurrency=8, executor_owner_share=0.5)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = pb_grpc.ScheduleServiceStub(channel)
            hanging = []
            for i in range(50):
                task = register_task(stub, f"a-{i}", "async-post", metadata={"url": f"{receiver.url}/hold/60"})
                owned_by(svc, task, "alpha")
                hanging.append(task)
            b = register_task(stub, "b-hook", "async-post", metadata={"url": f"{receiver.url}/hold/0"})
            owned_by(svc, b, "beta")
            for task in hanging:
                enqueue_scheduled(svc, task.id, task.name, clock.now())
            eventually(lambda: len(receiver.arrived) >= 4)
            on_time = enqueue_scheduled(svc, b.id, b.name, clock.now())
            eventually(lambda: statuses(svc, ["b-hook"]) == [ExecutionStatus.SUCCESS])
            alpha = statuses(svc, [t.name for t in hanging])
            # beta's call ran while alpha's hung: alpha holds 4 of the 8 slots, the rest of its calls wait
            assert alpha.count(ExecutionStatus.RUNNING) == 4 and alpha.count(ExecutionStatus.PENDING) == 46
            assert on_time.id in receiver.arrived
            started = time.monotonic()
            answer = stub.RunTaskNow(pb.RunTaskNowRequest(name="b-hook"), timeout=30)
            assert answer.execution.status == pb.EXECUTION_STATUS_SUCCESS
            assert time.monotonic() - started < 10  # generous: it waits on no one's slot
    finally:
        svc.stop()


def test_run_now_is_not_queued_behind_other_callers_work_in_a_full_local_lane(
    database_url: str, clock: FakeClock, smtp: SmtpServer
) -> None:
    svc = start_replica(database_url, clock, smtp, executor_concurrency=2, executor_owner_share=0.5)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = pb_grpc.ScheduleServiceStub(channel)
            sleepers = []
            for owner in ("alpha", "gamma"):
                for i in range(2):
                    task = register_task(stub, f"{owner}-{i}", "sleep", metadata={"seconds": 60})
                    owned_by(svc, task, owner)
                    sleepers.append(task)
                    enqueue_scheduled(svc, task.id, task.name, clock.now())
            beta = register_task(stub, "beta-now", "noop")
            owned_by(svc, beta, "beta")
            names = [t.name for t in sleepers]
            eventually(lambda: statuses(svc, names).count(ExecutionStatus.RUNNING) == 2)
            # each owner holds one of the two worker processes; their second executions wait
            assert statuses(svc, names).count(ExecutionStatus.PENDING) == 2
            answer = stub.RunTaskNow(pb.RunTaskNowRequest(name="beta-now"), timeout=30)
            assert answer.execution.status == pb.EXECUTION_STATUS_SUCCESS
            assert statuses(svc, names).count(ExecutionStatus.RUNNING) == 2
    finally:
        svc.stop()


def test_disable_cancels_pending_retries_and_lets_a_running_call_finish_unretried(
    lanes: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    failing = register_task(stub, "flaky", "failing")
    enqueue_scheduled(lanes, failing.id, failing.name, clock.now())
    eventually(lambda: [x for x in history(lanes, "flaky") if x.attempt == 2])  # due in 1 s of a clock that waits
    held = register_task(stub, "held-hook", "async-post", metadata={"url": f"{receiver.url}/hold/1"})
    running = enqueue_scheduled(lanes, held.id, held.name, clock.now())
    eventually(lambda: running.id in receiver.arrived)
    stub.DisableTask(pb.DisableTaskRequest(name="flaky"))
    stub.DisableTask(pb.DisableTaskRequest(name="held-hook"))
    first, retry = history(lanes, "flaky")
    assert first.status is ExecutionStatus.FAILED
    assert retry.status is ExecutionStatus.CANCELLED
    assert retry.error == "cancelled before it started: the task was disabled"
    assert lanes.executor.wait_finished(running.id, 30)
    assert [x.status for x in history(lanes, "held-hook")] == [ExecutionStatus.SUCCESS]
    assert running.id not in receiver.gone


def test_disable_with_cancel_running_stops_the_running_call(
    lanes: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    task = register_task(stub, "held-hook", "async-post", metadata={"url": f"{receiver.url}/hold/30"})
    running = enqueue_scheduled(lanes, task.id, task.name, clock.now())
    eventually(lambda: running.id in receiver.arrived)
    stub.DisableTask(pb.DisableTaskRequest(name="held-hook", cancel_running=True))
    eventually(lambda: running.id in receiver.gone, timeout_s=5)
    [row] = history(lanes, "held-hook")
    assert row.status is ExecutionStatus.CANCELLED and row.error == "cancelled while running: the task was disabled"


@pytest.mark.parametrize("cancel_running", [False, True])
def test_unregister_lets_a_running_call_finish_or_stops_it(
    lanes: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver, cancel_running: bool
) -> None:
    task = register_task(stub, "held-hook", "async-post", metadata={"url": f"{receiver.url}/hold/2"})
    running = enqueue_scheduled(lanes, task.id, task.name, clock.now())
    eventually(lambda: running.id in receiver.arrived)
    stub.UnregisterTask(pb.UnregisterTaskRequest(name="held-hook", cancel_running=cancel_running))
    assert lanes.executor.wait_finished(running.id, 30)
    if cancel_running:
        eventually(lambda: running.id in receiver.gone, timeout_s=5)  # the call was cut
    else:
        assert running.id not in receiver.gone  # it was answered
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetTask(pb.GetTaskRequest(name="held-hook"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_remote_run_cancelled_before_its_batch_reaches_the_loop_never_calls_out(receiver: Receiver) -> None:
    lane = RemoteLane([AsyncPost()])
    lane.start()
    try:
        outcomes: dict[str, Any] = {}
        arrived = threading.Event()

        def done(execution_id: str) -> Callable[[Attempt | None], None]:
            def record(attempt: Attempt | None) -> None:
                outcomes[execution_id] = attempt
                if len(outcomes) == 2:
                    arrived.set()

            return record

        def ctx(execution_id: str) -> HandlerContext:
            return HandlerContext(
                execution_id=execution_id,
                task_id="t",
                task_name="t",
                scheduled_for=datetime.now(UTC),
                attempt=1,
                metadata={"url": f"{receiver.url}/ok"},
                timeout=timedelta(seconds=10),
                data=HANDLER_DATA,
            )

        kept = lane.prepare(AsyncPost(), ctx("kept"), done("kept"))
        dropped = lane.prepare(AsyncPost(), ctx("dropped"), done("dropped"))
        dropped.cancel()
        lane.submit([kept, dropped])  # one hand-over for the batch
        assert arrived.wait(10)
    finally:
        lane.stop()
    assert outcomes["dropped"] is None
    assert outcomes["kept"] is not None and outcomes["kept"].status is ExecutionStatus.SUCCESS
    assert list(receiver.arrived) == ["kept"]
