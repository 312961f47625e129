"""The server as orchestrators and operators see it: health, reflection, outages, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica, build
from schedule_grpc.settings import Settings
from tests.api.helpers import error_details

ROOT = Path(__file__).resolve().parents[2]


def _health(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_health_is_serving_for_the_server_and_the_service(channel: grpc.Channel) -> None:
    assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    assert _health(channel, "schedule.v1.ScheduleService") == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_api(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    [listing, described] = list(
        stub.ServerReflectionInfo(
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol="schedule.v1.ScheduleService"),
                ]
            ),
            timeout=5,
        )
    )
    names = {s.name for s in listing.list_services_response.service}
    assert {
        "schedule.v1.ScheduleService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    assert described.file_descriptor_response.file_descriptor_proto


def test_graceful_shutdown_reports_not_serving_first(service: Replica, channel: grpc.Channel) -> None:
    service.monitor.stop()
    assert _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def unreachable_database() -> Iterator[Replica]:
    """A replica whose Postgres is not there (a closed port)."""
    settings = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:9/none",
        grpc_address="127.0.0.1:0",
        migrate_on_start=False,
        health_interval_s=0.05,
        metrics_address="127.0.0.1:0",
    )
    svc = build(settings)
    svc.start()
    yield svc
    svc.stop()


def test_unreachable_database_is_not_serving_and_unavailable(unreachable_database: Replica) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{unreachable_database.port}") as channel:
        assert _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert "database" in unreachable_database.monitor.failing
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.ScheduleServiceStub(channel).ListTasks(pb.ListTasksRequest(), timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_details(caught.value)[0] == "UNAVAILABLE"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_process_migrates_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SCHEDULE_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "SCHEDULE_SHUTDOWN_GRACE_S": "1",
        "SCHEDULE_SHUTDOWN_DRAIN_S": "0.2",
        "SCHEDULE_METRICS_ADDRESS": "127.0.0.1:0",
    }
    process = subprocess.Popen([sys.executable, str(ROOT / "server.py")], env=env, stderr=subprocess.PIPE, text=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            deadline = time.monotonic() + 30
            while _health(channel) != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, "never became SERVING"
                time.sleep(0.05)
            stub = pb_grpc.ScheduleServiceStub(channel)
            # the one task a fresh server has is the built-in retention task
            assert [t.name for t in stub.ListTasks(pb.ListTasksRequest()).tasks] == ["cleanup-execution-history"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        stderr = process.stderr.read() if process.stderr else ""
    assert '"message": "serving"' in stderr and '"message": "stopped"' in stderr


def test_bad_setting_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "SCHEDULE_DATABASE_URL": "mysql://nope"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "server.py")], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "SCHEDULE_DATABASE_URL" in result.stderr
