"""/metrics as Prometheus scrapes it, after executions written the way the executor writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc
from sqlalchemy import insert

from schedule_grpc.app import Replica, build
from schedule_grpc.domain.models import ExecutionStatus
from schedule_grpc.settings import Settings
from schedule_grpc.store.tables import leader_epochs
from tests.executor_rows import ExecutorRows
from tests.support import FakeClock, Webhook, scrape, scrape_when

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _register(stub: pb_grpc.ScheduleServiceStub, name: str, url: str) -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"url": url})
    stub.RegisterTask(pb.RegisterTaskRequest(name=name, schedule="@hourly", handler="http", metadata=metadata))


def test_scrape_after_successes_failures_and_retries(
    service: Replica, stub: pb_grpc.ScheduleServiceStub, webhook: Webhook
) -> None:
    rows = ExecutorRows(service.database)
    _register(stub, "report", webhook.url)
    # Three occurrences succeed, 2 s late, each running 0.5 s.
    for hour in range(3):
        rows.run(
            "report",
            T0 + timedelta(hours=hour),
            ExecutionStatus.SUCCESS,
            late=timedelta(seconds=2),
            duration=timedelta(milliseconds=500),
        )
    # One fails, is retried twice (attempts 2 and 3), the last retry succeeds.
    failing = T0 + timedelta(hours=3)
    rows.run("report", failing, ExecutionStatus.FAILED, duration=timedelta(seconds=3))
    rows.run("report", failing, ExecutionStatus.FAILED, attempt=2, duration=timedelta(seconds=3))
    rows.run("report", failing, ExecutionStatus.SUCCESS, attempt=3)
    # Another exhausts its retries and is dead-lettered; one is missed, one is running now.
    lost = rows.run("report", T0 + timedelta(hours=4), ExecutionStatus.FAILED)
    rows.dead_letter(lost, T0 + timedelta(hours=4, seconds=5))
    rows.queue("report", T0 + timedelta(hours=5), status=ExecutionStatus.MISSED)
    rows.start(rows.queue("report", T0 + timedelta(hours=6)), T0 + timedelta(hours=6))
    with service.database.begin() as conn:
        conn.execute(insert(leader_epochs).values(replica_id="replica-a", acquired_at=T0))
    with pytest.raises(grpc.RpcError):
        stub.GetTask(pb.GetTaskRequest(name="absent"))

    task = (("task", "report"),)
    m = scrape_when(service, ("schedule_missed_occurrences_total", task), 1)  # the last event written
    assert m[("schedule_executions_total", (("outcome", "success"), *task))] == 4
    assert m[("schedule_executions_total", (("outcome", "failed"), *task))] == 3
    # run times by outcome, whatever the number of tasks: 3 x 0.5 s and 0.2 s succeeded, 2 x 3 s and 0.2 s failed
    success, failed = (("outcome", "success"),), (("outcome", "failed"),)
    assert m[("schedule_execution_duration_seconds_count", success)] == 4
    assert m[("schedule_execution_duration_seconds_count", failed)] == 3
    assert m[("schedule_execution_duration_seconds_sum", success)] == pytest.approx(3 * 0.5 + 0.2)
    assert m[("schedule_execution_duration_seconds_sum", failed)] == pytest.approx(2 * 3 + 0.2)
    assert m[("schedule_execution_duration_seconds_bucket", (("le", "0.5"), *success))] == 4
    assert m[("schedule_execution_duration_seconds_bucket", (("le", "0.5"), *failed))] == 1
    assert not [key for key in m if key[0].startswith("schedule_execution_duration") and "task" in dict(key[1])]
    # lateness: first attempts of scheduled executions only (5 of them; the 6th is running, on time)
    assert m[("schedule_fire_lateness_seconds_count", ())] == 6
    assert m[("schedule_fire_lateness_seconds_bucket", (("le", "1.0"),))] == 3
    assert m[("schedule_fire_lateness_seconds_bucket", (("le", "2.0"),))] == 6
    assert m[("schedule_execution_retries_total", (("attempt", "2"),))] == 1
    assert m[("schedule_execution_retries_total", (("attempt", "3"),))] == 1
    assert m[("schedule_dead_lettered_executions_total", task)] == 1
    assert m[("schedule_missed_occurrences_total", task)] == 1
    assert m[("schedule_dead_letters", ())] == 1
    assert m[("schedule_executions_running", ())] == 1
    assert m[("schedule_leader_epoch", ())] == 1
    assert m[("schedule_leader_info", (("replica_id", "replica-a"),))] == 1
    assert m[("schedule_metrics_event_reader_active", ())] == 1
    assert m[("process_resident_memory_bytes", ())] > 0 and ("process_cpu_seconds_total", ()) in m
    rpc = (("grpc_service", "schedule.v1.ScheduleService"), ("grpc_type", "unary"))
    assert m[("grpc_server_handled_total", (("grpc_code", "OK"), ("grpc_method", "RegisterTask"), *rpc))] == 1
    assert m[("grpc_server_handled_total", (("grpc_code", "NOT_FOUND"), ("grpc_method", "GetTask"), *rpc))] == 1
    assert m[("grpc_server_handling_seconds_count", (("grpc_method", "GetTask"), *rpc))] == 1

    # a second scrape counts nothing twice
    assert scrape(service)[("schedule_executions_total", (("outcome", "success"), *task))] == 4

    # a deleted task's series go with it
    stub.UnregisterTask(pb.UnregisterTaskRequest(name="report"))
    after = scrape(service)
    assert not [key for key in after if ("task", "report") in key[1]]
    assert after[("schedule_execution_duration_seconds_count", success)] == 4  # the totals stay


@pytest.mark.postgres
def test_two_replicas_count_each_execution_once(postgres_url: str, clock: FakeClock, webhook: Webhook) -> None:
    replicas = [
        build(
            Settings(
                database_url=postgres_url,
                grpc_address="127.0.0.1:0",
                migrate_on_start=False,
                metrics_address="127.0.0.1:0",
            ),
            clock=clock,
        )
        for _ in range(2)
    ]
    for replica in replicas:
        replica.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{replicas[0].port}") as channel:
            _register(pb_grpc.ScheduleServiceStub(channel), "shared", webhook.url)
        rows = ExecutorRows(replicas[0].database)
        for i in range(5):
            rows.run("shared", T0 + timedelta(minutes=i), ExecutionStatus.SUCCESS)
        key = ("schedule_executions_total", (("outcome", "success"), ("task", "shared")))
        counter = next(r for r in replicas if r.observability.counter_active)
        scrape_when(counter, key, 5)
        scrapes = [scrape(r) for r in replicas]
        assert sum(s.get(key, 0) for s in scrapes) == 5
        assert sorted(s[("schedule_metrics_event_reader_active", ())] for s in scrapes) == [0, 1]
        # the shared-state gauges are the same on both: aggregate them with max()
        assert {s[("schedule_executions_running", ())] for s in scrapes} == {0}
    finally:
        for replica in replicas:
            replica.stop()
