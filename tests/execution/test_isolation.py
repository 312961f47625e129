"""Timeouts, memory limits, crashes, killed workers and replicas, cancellation, RunTaskNow deadlines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica
from schedule_grpc.domain.models import ErrorCategory, ExecutionStatus, Trigger
from schedule_grpc.store.executions import ExecutionStore
from tests.execution.conftest import enqueue_scheduled, history
from tests.support import FakeClock, eventually, register_task

NO_RETRY = pb.RetryPolicy(max_retries=0)


def test_a_handler_past_its_timeout_is_stopped_and_retried(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock
) -> None:
    task = register_task(
        stub, "hangs", "sleep", metadata={"seconds": 30}, timeout=duration_pb2.Duration(nanos=300_000_000)
    )
    enqueue_scheduled(replica, task.id, task.name, clock.now())
    retry = eventually(lambda: [x for x in history(replica, task.name) if x.attempt == 2])[0]
    [first] = [x for x in history(replica, task.name) if x.attempt == 1]
    assert first.status is ExecutionStatus.FAILED and first.error_category is ErrorCategory.TIMEOUT
    assert "timeout of 0.3s" in (first.error or "")
    assert retry.status is ExecutionStatus.PENDING and retry.due_at == first.completed_at + timedelta(seconds=1)  # type: ignore[operator]


def test_a_handler_past_its_memory_limit_fails_as_resource_and_the_service_is_unharmed(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub
) -> None:
    register_task(stub, "hog", "allocate", metadata={"mb": 400}, memory_limit_mb=64, retry_policy=NO_RETRY)
    response = stub.RunTaskNow(pb.RunTaskNowRequest(name="hog"))
    assert not response.success
    assert response.execution.error_category == pb.ERROR_CATEGORY_RESOURCE
    assert "memory limit" in response.execution.error
    register_task(stub, "modest", "allocate", metadata={"mb": 16}, memory_limit_mb=64)
    assert stub.RunTaskNow(pb.RunTaskNowRequest(name="modest")).success


@pytest.mark.parametrize(
    ("how", "cause"), [("exit", "exited with code 3"), ("segfault", "before reporting an outcome")]
)
def test_a_crashing_handler_fails_only_its_own_attempt(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, how: str, cause: str
) -> None:
    register_task(stub, "crashes", "crash", metadata={"how": how})
    response = stub.RunTaskNow(pb.RunTaskNowRequest(name="crashes"))
    assert not response.success and response.execution.error_category == pb.ERROR_CATEGORY_RESOURCE
    assert "crashed" in response.execution.error and cause in response.execution.error
    register_task(stub, "fine", "noop")
    assert stub.RunTaskNow(pb.RunTaskNowRequest(name="fine")).success


def test_no_state_leaks_from_one_execution_to_the_next(replica: Replica, stub: pb_grpc.ScheduleServiceStub) -> None:
    register_task(stub, "leaky", "leaky")
    results = [stub.RunTaskNow(pb.RunTaskNowRequest(name="leaky")).execution.result.number_value for _ in range(3)]
    assert results == [1, 1, 1]


def test_a_worker_process_killed_mid_execution_fails_and_is_retried(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    task = register_task(stub, "victim", "sleep", metadata={"seconds": 30, "pidFile": str(pid_file)})
    enqueue_scheduled(replica, task.id, task.name, clock.now())
    pid = read_pid(pid_file)
    os.kill(pid, signal.SIGKILL)
    retry = eventually(lambda: [x for x in history(replica, task.name) if x.attempt == 2])[0]
    [first] = [x for x in history(replica, task.name) if x.attempt == 1]
    assert first.error_category is ErrorCategory.RESOURCE and "SIGKILL" in (first.error or "")
    assert retry.trigger is Trigger.RETRY and retry.status is ExecutionStatus.PENDING


REPLICA = textwrap.dedent(
    """
    import sys, threading
    from schedule_grpc.settings import Settings
    from schedule_grpc.app import build
    from tests.execution.conftest import registry
    settings = Settings(database_url=sys.argv[1], grpc_address="127.0.0.1:0", migrate_on_start=False,
                        executor_poll_interval_s=0.05, executor_lease_s=1.0, engine_enabled=False,
                        metrics_address="")
    build(settings, handlers=registry()).start()
    threading.Event().wait()
    """
)


def test_an_execution_of_a_replica_killed_mid_execution_is_recovered_and_retried(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, tmp_path: Path
) -> None:
    replica.executor.stop()  # only the doomed replica claims; this one comes back as the survivor
    pid_file = tmp_path / "pid"
    task = register_task(stub, "orphan", "sleep", metadata={"seconds": 30, "pidFile": str(pid_file)})
    other = subprocess.Popen([sys.executable, "-c", REPLICA, replica.settings.database_url], start_new_session=True)
    try:
        now = datetime.now(UTC)
        enqueue_scheduled(replica, task.id, task.name, now - timedelta(seconds=1))
        handler_pid = read_pid(pid_file, 30)
        os.kill(other.pid, signal.SIGKILL)  # the replica dies mid-execution
        other.wait(10)
        eventually(lambda: not _alive(handler_pid))  # its worker process dies with it
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait(10)
    [running] = history(replica, task.name)
    assert running.status is ExecutionStatus.RUNNING and running.lease_owner
    survivor = _restart_executor(replica, clock, now + timedelta(seconds=5))  # past the lease
    try:
        retry = eventually(lambda: [x for x in history(replica, task.name) if x.attempt == 2])[0]
        [first] = [x for x in history(replica, task.name) if x.attempt == 1]
        assert first.status is ExecutionStatus.FAILED and first.error_category is ErrorCategory.RESOURCE
        assert "stopped renewing its lease" in (first.error or "") and running.lease_owner in (first.error or "")
        assert retry.status is ExecutionStatus.PENDING and retry.scheduled_for == first.scheduled_for
    finally:
        survivor.stop()


def read_pid(pid_file: Path, timeout_s: float = 15.0) -> int:
    """The pid the sleep handler wrote once it started."""
    return int(eventually(lambda: pid_file.read_text() if pid_file.exists() else None, timeout_s=timeout_s))


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its reaper does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _restart_executor(replica: Replica, clock: FakeClock, at: datetime):  # type: ignore[no-untyped-def]
    from schedule_grpc.execution.executor import Executor, ExecutorConfig
    from schedule_grpc.store.queue import QueueStore
    from tests.execution.conftest import registry

    clock.set(at)
    executor = Executor(
        QueueStore(replica.database),
        registry(),
        clock,
        replica.alerts,
        ExecutorConfig(owner="survivor", poll_interval_s=0.05, lease_s=2.0),
    )
    executor.start()
    return executor


def test_cancel_stops_a_running_execution_and_drops_a_pending_one(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    task = register_task(stub, "long", "sleep", metadata={"seconds": 30, "pidFile": str(pid_file)})
    running = enqueue_scheduled(replica, task.id, task.name, clock.now())
    pid = read_pid(pid_file)
    # Overlap policy skip: the next occurrence waits while the first runs.
    waiting = enqueue_scheduled(replica, task.id, task.name, clock.now() + timedelta(microseconds=1))
    clock.advance(timedelta(seconds=1))
    cancelled = stub.CancelExecution(pb.CancelExecutionRequest(execution_id=running.id)).execution
    assert cancelled.status == pb.EXECUTION_STATUS_CANCELLED and cancelled.error == "cancelled while running"
    eventually(lambda: not _alive(pid))
    executions = ExecutionStore(replica.database)
    eventually(lambda: executions.get(waiting.id).status is not ExecutionStatus.PENDING)  # type: ignore[union-attr]
    assert executions.get(running.id).status is ExecutionStatus.CANCELLED  # type: ignore[union-attr]
    # The waiting one started once the first stopped; cancel it too.
    stub.CancelExecution(pb.CancelExecutionRequest(execution_id=waiting.id))
    with pytest.raises(grpc.RpcError) as caught:
        stub.CancelExecution(pb.CancelExecutionRequest(execution_id=waiting.id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as caught:
        stub.CancelExecution(pb.CancelExecutionRequest(execution_id="exec-none"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(history(replica, task.name)) == 2  # nothing retried


def test_cancel_a_pending_execution(replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock) -> None:
    task = register_task(stub, "later", "noop")
    future = enqueue_scheduled(replica, task.id, task.name, clock.now() + timedelta(hours=1))
    cancelled = stub.CancelExecution(pb.CancelExecutionRequest(execution_id=future.id)).execution
    assert cancelled.status == pb.EXECUTION_STATUS_CANCELLED and cancelled.error == "cancelled before it started"


def test_run_now_past_the_call_deadline_says_so_and_the_execution_carries_on(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub
) -> None:
    task = register_task(stub, "slowish", "sleep", metadata={"seconds": 1.5})
    with pytest.raises(grpc.RpcError) as caught:
        stub.RunTaskNow(pb.RunTaskNowRequest(name="slowish"), timeout=0.6)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    [execution] = history(replica, task.name)
    assert execution.trigger is Trigger.MANUAL
    eventually(lambda: history(replica, task.name)[0].status is ExecutionStatus.SUCCESS)
