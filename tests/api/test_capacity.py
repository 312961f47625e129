"""Probes and other callers are never starved: long calls (RunTaskNow waits, WatchExecutions streams) have
their own bounded threads, per caller and per replica, and give them back when their caller goes away."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica
from tests.api.shim_support import AUTH_TOKENS, bearer, serve
from tests.support import FakeClock, Webhook, eventually

ALPHA = tuple(bearer("alpha-secret").items())
BETA = tuple(bearer("beta-secret").items())
STREAMS = 3  # WatchExecutions streams per replica
PER_CALLER = 6  # long calls one caller may hold


@pytest.fixture
def hanging() -> Iterator[Webhook]:
    hook = Webhook(delay_s=20)  # a webhook that does not answer while the test runs
    yield hook
    hook.close()


@pytest.fixture
def service(sqlite_url: str, clock: FakeClock) -> Iterator[Replica]:
    with serve(
        sqlite_url,
        clock,
        auth_tokens=AUTH_TOKENS,
        grpc_max_workers=4,  # few short-call threads: a leak of long calls into them would show at once
        watch_max_streams=STREAMS,
        long_calls_max=8,
        long_calls_per_caller=PER_CALLER,
        expensive_rate_limit_burst=50,
        executor_concurrency=8,
        shutdown_grace_s=1,
        metrics_address="",
    ) as service:
        yield service


@pytest.fixture
def channel(service: Replica) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        yield channel


def _hanging_task(
    stub: pb_grpc.ScheduleServiceStub, hook: Webhook, name: str = "hangs", caller: tuple[tuple[str, str], ...] = ALPHA
) -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"url": hook.url, "timeoutSeconds": 30})
    stub.RegisterTask(
        pb.RegisterTaskRequest(name=name, schedule="@hourly", handler="http", metadata=metadata), metadata=caller
    )


def test_one_caller_holding_every_long_call_starves_neither_probes_nor_other_callers(
    service: Replica, channel: grpc.Channel, hanging: Webhook
) -> None:
    stub = pb_grpc.ScheduleServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    _hanging_task(stub, hanging)
    _hanging_task(stub, hanging, "beta-hangs", BETA)
    http = httpx.Client(base_url=f"http://127.0.0.1:{service.http_port}")
    assert http.get("/api/health").status_code == 200  # connections made before the load
    streams = [stub.WatchExecutions(pb.WatchExecutionsRequest(), metadata=ALPHA) for _ in range(STREAMS)]
    for stream in streams:
        next(iter(stream))  # each stream is open and holding its thread
    runs = [
        stub.RunTaskNow.future(pb.RunTaskNowRequest(name="hangs"), metadata=ALPHA, timeout=30)
        for _ in range(PER_CALLER - STREAMS)
    ]
    assert service.long_calls is not None
    eventually(lambda: service.long_calls is not None and service.long_calls.held == PER_CALLER)

    # the same caller is refused a further long call at once, with a reason
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.RunTaskNow(pb.RunTaskNowRequest(name="hangs"), metadata=ALPHA, timeout=5)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "long calls" in (caught.value.details() or "")
    assert time.monotonic() - started < 1.0

    # another caller and the probes are answered at once, repeatedly
    for _ in range(5):
        started = time.monotonic()
        assert stub.ListTasks(pb.ListTasksRequest(), metadata=BETA, timeout=1).tasks[0].name == "beta-hangs"
        listing = time.monotonic() - started
        started = time.monotonic()
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
        checking = time.monotonic() - started
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert listing < 0.1 and checking < 0.1, (listing, checking)
        started = time.monotonic()
        answer = http.get("/api/health", timeout=1)
        assert answer.status_code == 200 and time.monotonic() - started < 0.1  # the HTTP probe too
    # another caller still gets a long call of its own: WatchExecutions is full, but RunTaskNow is not
    other = stub.RunTaskNow.future(pb.RunTaskNowRequest(name="beta-hangs"), metadata=BETA, timeout=30)
    eventually(lambda: service.long_calls is not None and service.long_calls.held == PER_CALLER + 1)
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(stub.WatchExecutions(pb.WatchExecutionsRequest(), metadata=BETA, timeout=5)))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    http.close()
    for call in [*streams, *runs, other]:
        call.cancel()  # type: ignore[no-untyped-call]
    eventually(lambda: service.long_calls is not None and service.long_calls.held == 0, timeout_s=2)


def test_run_now_frees_its_thread_when_the_caller_goes_away_or_its_deadline_passes(
    service: Replica, channel: grpc.Channel, hanging: Webhook
) -> None:
    stub = pb_grpc.ScheduleServiceStub(channel)
    _hanging_task(stub, hanging)
    call = stub.RunTaskNow.future(pb.RunTaskNowRequest(name="hangs"), metadata=ALPHA, timeout=30)
    eventually(lambda: service.long_calls is not None and service.long_calls.held == 1)
    call.cancel()  # type: ignore[no-untyped-call]
    started = time.monotonic()
    eventually(lambda: service.long_calls is not None and service.long_calls.held == 0, timeout_s=1)
    assert time.monotonic() - started < 0.5

    with pytest.raises(grpc.RpcError) as caught:
        stub.RunTaskNow(pb.RunTaskNowRequest(name="hangs"), metadata=ALPHA, timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    eventually(lambda: service.long_calls is not None and service.long_calls.held == 0, timeout_s=0.5)
    # the executions carry on: they show in the history
    history = stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="hangs"), metadata=ALPHA).history
    assert len(history) == 2


def test_health_lists_its_services_and_watch_sends_only_changes(service: Replica, channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    statuses = health.List(health_pb2.HealthListRequest(), timeout=1).statuses
    assert {name: s.status for name, s in statuses.items()} == {
        "": health_pb2.HealthCheckResponse.SERVING,
        "schedule.v1.ScheduleService": health_pb2.HealthCheckResponse.SERVING,
    }
    watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    for _ in range(3):
        service.monitor.check_once()  # the same result as before: nothing to send
    service.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    service.health.end_watches()
    with pytest.raises(grpc.RpcError) as caught:
        next(watch)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_open_reflection_streams_do_not_take_the_probes_threads(service: Replica, channel: grpc.Channel) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    done = threading.Event()

    def requests() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        done.wait(10)  # the client keeps its stream open

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    streams = [reflection.ServerReflectionInfo(requests(), metadata=ALPHA, timeout=20) for _ in range(6)]
    try:
        first = next(iter(streams[0]))
        assert "grpc.health.v1.Health" in {s.name for s in first.list_services_response.service}
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(5):
            started = time.monotonic()
            assert (
                health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                == health_pb2.HealthCheckResponse.SERVING
            )
            assert time.monotonic() - started < 0.1
    finally:
        done.set()
        for stream in streams:
            stream.cancel()
