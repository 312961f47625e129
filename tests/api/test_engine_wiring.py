"""A replica with its scheduling engine: a task registered through the API is scheduled at once."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc
from sqlalchemy import text

from schedule_grpc.app import Replica, build
from schedule_grpc.scheduling.engine import SchedulingEngine
from schedule_grpc.settings import Settings
from tests.integration.engine_support import FUTURE
from tests.support import FakeClock, eventually


@pytest.fixture
def leading(database_url: str) -> Iterator[Replica]:
    settings = Settings(
        database_url=database_url,
        grpc_address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",  # not the fixed default port: test runs may overlap
        migrate_on_start=False,
        leader_retry_interval_s=0.05,
        replica_id="api-replica",
    )
    svc = build(settings, clock=FakeClock(FUTURE))
    svc.start()
    assert isinstance(svc.scheduling, SchedulingEngine) and svc.scheduling.wait_leader(10)
    yield svc
    svc.stop()


def test_a_task_registered_through_the_api_is_scheduled_at_once(leading: Replica) -> None:
    # Due within the scheduler's horizon (three reconcile intervals): it gets its job at once.
    metadata = struct_pb2.Struct()
    metadata.update({"url": "http://127.0.0.1:9/"})
    with grpc.insecure_channel(f"127.0.0.1:{leading.port}") as channel:
        stub = pb_grpc.ScheduleServiceStub(channel)
        task = stub.RegisterTask(
            pb.RegisterTaskRequest(name="wired", schedule="*/2 * * * *", handler="http", metadata=metadata), timeout=5
        ).task
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING

    def scheduled() -> bool:
        with leading.database.connect() as conn:
            return (
                conn.execute(text("SELECT count(*) FROM apscheduler_jobs WHERE id = :i"), {"i": task.id}).scalar() == 1
            )

    assert eventually(scheduled)
    with leading.database.connect() as conn:
        assert conn.execute(text("SELECT replica_id FROM leader_epochs")).scalars().all() == ["api-replica"]
