"""A replica whose firing loop is stuck reports NOT_SERVING over grpc.health.v1 and gives leadership up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from schedule_grpc.app import Replica, build
from schedule_grpc.scheduling.engine import SchedulingEngine
from schedule_grpc.settings import Settings
from tests.integration.engine_support import FUTURE
from tests.support import FakeClock, eventually

pytestmark = pytest.mark.postgres


@pytest.fixture
def leading(postgres_url: str) -> Iterator[Replica]:
    settings = Settings(
        database_url=postgres_url,
        grpc_address="127.0.0.1:0",
        metrics_address="",
        migrate_on_start=False,
        leader_retry_interval_s=0.05,
        leader_grace_s=0.5,  # silent for 2.5 s (term 2 s + grace) is stuck
        health_interval_s=0.1,
        replica_id="stuck-replica",
    )
    svc = build(settings, clock=FakeClock(FUTURE))
    svc.start()
    assert isinstance(svc.scheduling, SchedulingEngine) and svc.scheduling.wait_leader(10)
    yield svc
    svc.stop()


def test_a_stuck_firing_loop_turns_health_not_serving_and_the_replica_stops_leading(
    leading: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = leading.scheduling
    assert isinstance(engine, SchedulingEngine)
    released = threading.Event()
    renew = engine._lease.renew

    def stuck(epoch: int, now: datetime, expires_at: datetime) -> bool:
        released.wait(30)  # the firing loop hangs here, in a live process
        return renew(epoch, now, expires_at)

    def status(stub: health_pb2_grpc.HealthStub) -> int:
        return int(stub.Check(health_pb2.HealthCheckRequest(service="schedule.v1.ScheduleService"), timeout=5).status)

    with grpc.insecure_channel(f"127.0.0.1:{leading.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert status(stub) == health_pb2.HealthCheckResponse.SERVING
        monkeypatch.setattr(engine._lease, "renew", stuck)
        try:
            assert eventually(lambda: status(stub) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout_s=10)
            assert eventually(lambda: not engine.is_leader, timeout_s=10)
            assert "firing loop" in leading.monitor.failing["scheduling engine"]
        finally:
            released.set()
        # once the loop ends, the replica (alone here) leads again and reports SERVING
        assert eventually(lambda: status(stub) == health_pb2.HealthCheckResponse.SERVING, timeout_s=15)
        assert engine.wait_leader(5)
