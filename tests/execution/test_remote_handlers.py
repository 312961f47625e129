"""The built-in network handlers run through a real replica's executor, in the lane they run in (the
remote lane's event loop: http, grpc and health-check-services), with the default 512 MiB memory limit
in force and the egress policy the settings give."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica, build
from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.domain.models import ErrorCategory, Execution, ExecutionStatus
from schedule_grpc.handlers.base import lane_of
from schedule_grpc.settings import Settings
from tests.execution.conftest import enqueue_scheduled, history, replica_settings
from tests.execution.smtp import SmtpServer
from tests.handler_support import Answer, GrpcTestServer, Receiver
from tests.support import FakeClock, eventually


@pytest.fixture
def replica(database_url: str, clock: FakeClock, smtp: SmtpServer) -> Iterator[Replica]:
    """The built-in handlers; loopback allowed except 127.0.0.2; the default 512 MiB memory limit."""
    settings = replica_settings(database_url, smtp, egress_allow="127.0.0.0/8", egress_deny="127.0.0.2/32")
    assert settings.executor_memory_limit_mb == 512
    svc = build(settings, clock=clock)
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def stub(replica: Replica) -> Iterator[pb_grpc.ScheduleServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{replica.port}") as channel:
        yield pb_grpc.ScheduleServiceStub(channel)


@pytest.fixture
def grpc_server() -> Iterator[GrpcTestServer]:
    server = GrpcTestServer()
    yield server
    server.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def run_once(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, name: str, handler: str, **metadata: Any
) -> Execution:
    """Registers a task (no retries), queues one occurrence as the engine would, waits for its outcome."""
    struct = struct_pb2.Struct()
    struct.update(metadata)
    request = pb.RegisterTaskRequest(
        name=name, schedule="@hourly", handler=handler, metadata=struct, retry_policy=pb.RetryPolicy(max_retries=0)
    )
    task = stub.RegisterTask(request, timeout=10).task
    enqueue_scheduled(replica, task.id, task.name, clock.now())
    done = (ExecutionStatus.SUCCESS, ExecutionStatus.FAILED)
    [execution] = eventually(lambda: [x for x in history(replica, name) if x.status in done], 30)
    return execution


def test_the_network_handlers_declare_their_lanes() -> None:
    registry = handler_registry(Settings())
    lanes = {name: lane_of(registry.get(name)) for name in ("http", "grpc", "health-check-services")}  # type: ignore[arg-type]
    assert lanes == {"http": "remote", "grpc": "remote", "health-check-services": "remote"}


def test_a_webhook_runs_on_the_remote_lane_and_stores_status_and_json(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    execution = run_once(replica, stub, clock, "hook", "http", url=receiver.url(), body={"n": 1})
    assert execution.status is ExecutionStatus.SUCCESS
    assert execution.result == {"status": 200, "body": {"ok": True}}
    [(_, headers, body)] = receiver.requests
    assert json.loads(body) == {"n": 1} and headers["X-Schedule-Task"] == "hook"
    assert headers["Idempotency-Key"] == f"{execution.task_id}:{clock.now().isoformat().replace('+00:00', 'Z')}"


def test_an_error_answer_is_recorded_as_json_without_the_urls_secrets(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, receiver: Receiver
) -> None:
    receiver.answer = Answer(status=500, body=b'{"ok": true}')
    url = f"http://bob:pw@127.0.0.1:{receiver.port}/hook?api_key=k3y"
    execution = run_once(replica, stub, clock, "broken", "http", url=url)
    assert execution.status is ExecutionStatus.FAILED and execution.error_category is ErrorCategory.NETWORK
    assert execution.error == f'POST http://127.0.0.1:{receiver.port}/hook answered 500: {{"ok": true}}'
    assert "k3y" not in (execution.traceback or "") and "pw@" not in (execution.traceback or "")


def test_a_denied_address_fails_the_attempt_by_policy_and_nothing_is_sent_or_stored(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock
) -> None:
    denied = Receiver(host="127.0.0.2")  # SCHEDULE_EGRESS_DENY names it
    try:
        execution = run_once(replica, stub, clock, "ssrf", "http", url=denied.url())
    finally:
        denied.close()
    assert execution.status is ExecutionStatus.FAILED and execution.error_category is ErrorCategory.POLICY
    assert execution.error == "egress denied: 127.0.0.2 is in the denied network 127.0.0.2/32"
    assert execution.result is None and denied.requests == []


def test_a_grpc_call_through_reflection_succeeds_under_the_default_memory_limit(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, grpc_server: GrpcTestServer
) -> None:
    execution = run_once(
        replica, stub, clock, "grpc-call", "grpc", target=grpc_server.target, method="grpc.health.v1.Health/Check",
        request={"service": "billing"},
    )  # fmt: skip
    assert execution.status is ExecutionStatus.SUCCESS, execution.error
    assert execution.result == {"method": "grpc.health.v1.Health/Check", "response": {"status": "SERVING"}}
    service, metadata = grpc_server.health.calls[-1]
    assert service == "billing" and metadata["x-schedule-task"] == "grpc-call"


def test_health_probes_run_on_the_remote_lane_and_record_each_service(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, grpc_server: GrpcTestServer,
    receiver: Receiver,
) -> None:  # fmt: skip
    targets = {"billing": f"grpc://{grpc_server.target}/billing.v1.Billing", "web": receiver.url("/healthz")}
    execution = run_once(replica, stub, clock, "probes", "health-check-services", targets=targets, timeoutSeconds=5)
    assert execution.status is ExecutionStatus.SUCCESS, execution.error
    assert isinstance(execution.result, dict)
    assert execution.result["up"] == 2 and execution.result["down"] == 0
    assert grpc_server.health.calls[-1][0] == "billing.v1.Billing" and receiver.requests[-1][0] == "/healthz"
