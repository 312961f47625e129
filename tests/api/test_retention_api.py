"""The retention task keeps history bounded: old executions, dead letters and events go, in batches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2, json_format, struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc
from sqlalchemy import func, select

from schedule_grpc.app import Replica, build
from schedule_grpc.domain.models import ExecutionStatus
from schedule_grpc.domain.validation import NewTask
from schedule_grpc.settings import Settings
from schedule_grpc.store.tables import dead_letters, execution_events, task_executions
from schedule_grpc.usecases import retention
from tests.executor_rows import ExecutorRows
from tests.support import FakeClock, Webhook, scrape, scrape_when


@pytest.fixture
def replica(database_url: str, clock: FakeClock) -> Iterator[Replica]:
    """Small batches, so that a run takes several; the built-in task installed as at start-up."""
    settings = Settings(
        database_url=database_url,
        grpc_address="127.0.0.1:0",
        migrate_on_start=False,
        metrics_address="127.0.0.1:0",
        engine_enabled=False,  # the engine keeps wall-clock time; these runs go through RunTaskNow
        retention_batch_size=7,
        execution_retention_days=30,
        dead_letter_retention_days=10,
        event_retention_days=2,
    )
    svc = build(settings, clock=clock)
    svc.start()
    assert retention.install_maintenance_task(svc.tasks.register, settings.retention_schedule)
    assert not retention.install_maintenance_task(svc.tasks.register, settings.retention_schedule)  # idempotent
    yield svc
    svc.stop()


def _count(service: Replica, table: object) -> int:
    with service.database.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_the_retention_task_keeps_the_tables_bounded(replica: Replica, clock: FakeClock, webhook: Webhook) -> None:
    rows = ExecutorRows(replica.database)
    with grpc_stub(replica) as stub:
        for name, keep in (("plain", None), ("audit", timedelta(days=365)), ("noisy", timedelta(days=1))):
            metadata = struct_pb2.Struct()
            metadata.update({"url": webhook.url})
            request = pb.RegisterTaskRequest(name=name, schedule="@daily", handler="http", metadata=metadata)
            if keep:
                request.history_retention.CopyFrom(duration_pb2.Duration(seconds=int(keep.total_seconds())))
            task = stub.RegisterTask(request).task
            assert task.HasField("history_retention") == bool(keep)
        now = clock.now()
        # 60 days of daily executions per task, the oldest a dead letter; one old execution still pending
        for day in range(60, 0, -1):
            for name in ("plain", "audit", "noisy"):
                execution = rows.run(name, now - timedelta(days=day), ExecutionStatus.FAILED)
                if day in (40, 5):
                    rows.dead_letter(execution, now - timedelta(days=day))
        stuck = rows.queue("plain", now - timedelta(days=50, hours=1), status=ExecutionStatus.RUNNING)
        before = scrape(replica)
        old_events = _count(replica, execution_events)

        response = stub.RunTaskNow(pb.RunTaskNowRequest(name="cleanup-execution-history"))
        assert response.success, response.message
        result = json_format.MessageToDict(response.execution.result)
    # plain keeps 30 days (and the old pending one); audit keeps all 60 days; noisy keeps its last day
    assert result["deletedExecutions"] == 30 + 59
    assert result["deletedDeadLetters"] == 6 - 3 and result["complete"] is True
    # the cleanup's own queued, started and succeeded events are the 3 added meanwhile
    assert result["deletedEvents"] == old_events + 3 - _count(replica, execution_events) > 0
    with replica.database.connect() as conn:
        by_task: dict[str, int] = dict(
            conn.execute(select(task_executions.c.task_name, func.count()).group_by(task_executions.c.task_name)).all()
        )
        assert conn.execute(select(task_executions.c.id).where(task_executions.c.id == stuck)).first() is not None
    assert by_task == {"plain": 30 + 1, "audit": 60, "noisy": 1, "cleanup-execution-history": 1}
    assert _count(replica, dead_letters) == 3
    deleted = ("schedule_retention_deleted_rows_total", (("table", "task_executions"),))
    after = scrape_when(replica, deleted, 89)  # the executor counts right after recording, which RunTaskNow may beat
    assert after[deleted] == 89
    assert after[("schedule_retention_deleted_rows_total", (("table", "dead_letters"),))] == 3
    assert after[("schedule_dead_letters", ())] == before[("schedule_dead_letters", ())] - 3
    oldest = ("schedule_execution_history_oldest_timestamp_seconds", ())
    assert after[oldest] == before[oldest]  # audit keeps the oldest; noisy/plain moved on
    # a second run finds nothing more to delete
    with grpc_stub(replica) as stub:
        again = json_format.MessageToDict(
            stub.RunTaskNow(pb.RunTaskNowRequest(name="cleanup-execution-history")).execution.result
        )
    assert again["deletedExecutions"] == 0 and again["deletedDeadLetters"] == 0


def test_one_run_deletes_at_most_its_batches(clock: FakeClock, sqlite_url: str) -> None:
    svc = build(
        Settings(
            database_url=sqlite_url,
            grpc_address="127.0.0.1:0",
            migrate_on_start=False,
            metrics_address="",
            engine_enabled=False,
            retention_batch_size=5,
            retention_max_batches=2,
            expensive_rate_limit_burst=20,  # one RunTaskNow per run
        ),
        clock=clock,
    )
    svc.start()
    try:
        assert retention.install_maintenance_task(svc.tasks.register, svc.settings.retention_schedule)
        rows = ExecutorRows(svc.database)
        metadata = {"url": "http://127.0.0.1:9/"}
        svc.tasks.register(None, NewTask(name="t", schedule="@daily", handler="http", metadata=metadata))
        for day in range(200, 175, -1):
            rows.run("t", clock.now() - timedelta(days=day), ExecutionStatus.SUCCESS)
        runs: list[dict[str, object]] = []
        with grpc_stub(svc) as stub:
            while len(runs) < 20 and not (runs and runs[-1]["complete"]):
                response = stub.RunTaskNow(pb.RunTaskNowRequest(name="cleanup-execution-history"))
                runs.append(json_format.MessageToDict(response.execution.result))
        assert (runs[0]["deletedExecutions"], runs[0]["complete"]) == (10, False)  # 2 batches of 5, then it stops
        assert sum(int(run["deletedExecutions"]) for run in runs) == 25 and runs[-1]["complete"] is True  # type: ignore[call-overload]
        with svc.database.connect() as conn:
            left = conn.execute(select(func.count()).where(task_executions.c.task_name == "t")).scalar_one()
        assert left == 0
    finally:
        svc.stop()


def test_the_retention_handler_takes_no_options(stub: pb_grpc.ScheduleServiceStub) -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"batchSize": 5})
    with pytest.raises(grpc.RpcError) as caught:
        stub.RegisterTask(
            pb.RegisterTaskRequest(name="c", schedule="@daily", handler="cleanup-execution-history", metadata=metadata)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        stub.RegisterTask(
            pb.RegisterTaskRequest(
                name="c",
                schedule="@daily",
                handler="cleanup-execution-history",
                history_retention=duration_pb2.Duration(seconds=60),
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cleanup-execution-history" in stub.ListHandlers(pb.ListHandlersRequest()).handlers


class grpc_stub:
    def __init__(self, service: Replica) -> None:
        self._channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")

    def __enter__(self) -> pb_grpc.ScheduleServiceStub:
        return pb_grpc.ScheduleServiceStub(self._channel)

    def __exit__(self, *_: object) -> None:
        self._channel.close()
