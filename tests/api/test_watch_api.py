"""WatchExecutions over a real server: filters, resuming without loss or repeats, several replicas."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc
from sqlalchemy import select

from schedule_grpc.app import Replica, build
from schedule_grpc.domain.models import ExecutionStatus
from schedule_grpc.settings import Settings
from schedule_grpc.store.events import EventStore
from schedule_grpc.store.tables import execution_events
from tests.api.helpers import error_details
from tests.executor_rows import ExecutorRows
from tests.support import FakeClock, Webhook

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _register(stub: pb_grpc.ScheduleServiceStub, name: str, url: str) -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"url": url})
    stub.RegisterTask(pb.RegisterTaskRequest(name=name, schedule="@hourly", handler="http", metadata=metadata))


def _take(
    stub: pb_grpc.ScheduleServiceStub, request: pb.WatchExecutionsRequest, count: int
) -> list[pb.WatchExecutionsResponse]:
    """The first ``count`` messages carrying an event (and the cursor-only ones before them)."""
    call = stub.WatchExecutions(request, timeout=20)
    got: list[pb.WatchExecutionsResponse] = []
    try:
        for message in call:
            got.append(message)
            if sum(1 for m in got if m.HasField("event")) == count:
                break
    finally:
        call.cancel()  # type: ignore[no-untyped-call]
    return got


def _events(messages: list[pb.WatchExecutionsResponse]) -> list[pb.ExecutionEvent]:
    return [m.event for m in messages if m.HasField("event")]


@pytest.fixture
def rows(service: Replica) -> ExecutorRows:
    return ExecutorRows(service.database)


def _start_cursor(stub: pb_grpc.ScheduleServiceStub) -> str:
    call = stub.WatchExecutions(pb.WatchExecutionsRequest(), timeout=10)
    first = next(iter(call))
    call.cancel()  # type: ignore[no-untyped-call]
    assert not first.HasField("event") and first.cursor
    return first.cursor


def test_a_watcher_sees_a_manual_run_queued_started_and_succeeded(
    stub: pb_grpc.ScheduleServiceStub, webhook: Webhook
) -> None:
    _register(stub, "ping", webhook.url)
    call = stub.WatchExecutions(pb.WatchExecutionsRequest(task_names=["ping"]), timeout=20)
    stream: Iterator[pb.WatchExecutionsResponse] = iter(call)
    assert not next(stream).HasField("event")  # the starting cursor comes first
    execution = stub.RunTaskNow(pb.RunTaskNowRequest(name="ping")).execution
    queued, started, succeeded = next(stream).event, next(stream).event, next(stream).event
    call.cancel()  # type: ignore[no-untyped-call]
    assert (queued.type, started.type, succeeded.type) == (
        pb.EXECUTION_EVENT_TYPE_QUEUED,
        pb.EXECUTION_EVENT_TYPE_STARTED,
        pb.EXECUTION_EVENT_TYPE_SUCCEEDED,
    )
    assert queued.execution_id == started.execution_id == succeeded.execution_id == execution.id
    assert succeeded.status == pb.EXECUTION_STATUS_SUCCESS and succeeded.HasField("duration_ms")
    assert succeeded.event_id > started.event_id and succeeded.trigger == pb.EXECUTION_TRIGGER_MANUAL


def test_every_kind_of_event_from_executor_writes(
    stub: pb_grpc.ScheduleServiceStub, rows: ExecutorRows, webhook: Webhook
) -> None:
    _register(stub, "job", webhook.url)
    cursor = _start_cursor(stub)
    first = rows.run("job", T0, ExecutionStatus.FAILED)
    retry = rows.run("job", T0, ExecutionStatus.FAILED, attempt=2)
    rows.dead_letter(retry, T0 + timedelta(seconds=5))
    rows.queue("job", T0 + timedelta(hours=1), status=ExecutionStatus.MISSED)
    rows.queue("job", T0 + timedelta(hours=2), status=ExecutionStatus.SKIPPED)
    cancelled = rows.queue("job", T0 + timedelta(hours=3))
    rows.finish(cancelled, ExecutionStatus.CANCELLED, T0 + timedelta(hours=3), duration=timedelta(0))
    events = _events(_take(stub, pb.WatchExecutionsRequest(cursor=cursor), 11))
    assert [(e.type, e.execution_id) for e in events[:7]] == [
        (pb.EXECUTION_EVENT_TYPE_QUEUED, first),
        (pb.EXECUTION_EVENT_TYPE_STARTED, first),
        (pb.EXECUTION_EVENT_TYPE_FAILED, first),
        (pb.EXECUTION_EVENT_TYPE_RETRIED, retry),
        (pb.EXECUTION_EVENT_TYPE_STARTED, retry),
        (pb.EXECUTION_EVENT_TYPE_FAILED, retry),
        (pb.EXECUTION_EVENT_TYPE_DEAD_LETTERED, retry),
    ]
    assert [e.type for e in events[7:]] == [
        pb.EXECUTION_EVENT_TYPE_MISSED,
        pb.EXECUTION_EVENT_TYPE_SKIPPED,
        pb.EXECUTION_EVENT_TYPE_QUEUED,
        pb.EXECUTION_EVENT_TYPE_CANCELLED,
    ]
    assert events[3].attempt == 2 and events[3].trigger == pb.EXECUTION_TRIGGER_RETRY
    assert events[2].error_category == pb.ERROR_CATEGORY_LOGIC


def test_filters_by_task_type_and_status(
    stub: pb_grpc.ScheduleServiceStub, rows: ExecutorRows, webhook: Webhook
) -> None:
    _register(stub, "a", webhook.url)
    _register(stub, "b", webhook.url)
    cursor = _start_cursor(stub)
    rows.run("a", T0, ExecutionStatus.SUCCESS)
    failed_b = rows.run("b", T0, ExecutionStatus.FAILED)
    rows.run("b", T0 + timedelta(hours=1), ExecutionStatus.SUCCESS)
    by_task_and_type = _events(
        _take(
            stub,
            pb.WatchExecutionsRequest(
                cursor=cursor,
                task_names=["b"],
                event_types=[pb.EXECUTION_EVENT_TYPE_FAILED, pb.EXECUTION_EVENT_TYPE_SUCCEEDED],
            ),
            2,
        )
    )
    assert [(e.task_name, e.type) for e in by_task_and_type] == [
        ("b", pb.EXECUTION_EVENT_TYPE_FAILED),
        ("b", pb.EXECUTION_EVENT_TYPE_SUCCEEDED),
    ]
    [failure] = _events(_take(stub, pb.WatchExecutionsRequest(cursor=cursor, statuses=[pb.EXECUTION_STATUS_FAILED]), 1))
    assert failure.execution_id == failed_b


def test_a_watcher_that_disconnects_and_resumes_gets_every_event_exactly_once(
    service: Replica, stub: pb_grpc.ScheduleServiceStub, rows: ExecutorRows, webhook: Webhook
) -> None:
    _register(stub, "job", webhook.url)
    cursor = _start_cursor(stub)
    received: list[pb.ExecutionEvent] = []
    for batch in range(4):
        # events written while the watcher is away ...
        for i in range(5):
            rows.run("job", T0 + timedelta(minutes=10 * batch + i), ExecutionStatus.SUCCESS)
        # ... and it reconnects from its last cursor, reads a part, and drops again
        messages = _take(stub, pb.WatchExecutionsRequest(cursor=cursor), 7)
        received += _events(messages)
        cursor = messages[-1].cursor
    received += _events(_take(stub, pb.WatchExecutionsRequest(cursor=cursor), 60 - len(received)))
    with service.database.connect() as conn:
        stored = conn.execute(select(execution_events.c.id).order_by(execution_events.c.id)).scalars().all()
    assert [e.event_id for e in received] == list(stored)  # all 60 (20 executions x 3), in order, no repeats
    assert len(received) == 60


def test_bad_and_expired_cursors(
    stub: pb_grpc.ScheduleServiceStub, service: Replica, rows: ExecutorRows, webhook: Webhook
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _take(stub, pb.WatchExecutionsRequest(cursor="nonsense"), 1)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(caught.value)[1] == "cursor"
    with pytest.raises(grpc.RpcError) as caught:
        _take(stub, pb.WatchExecutionsRequest(event_types=[pb.EXECUTION_EVENT_TYPE_UNSPECIFIED]), 1)
    assert error_details(caught.value)[1] == "event_types"

    _register(stub, "job", webhook.url)
    cursor = _start_cursor(stub)
    rows.run("job", T0, ExecutionStatus.SUCCESS)
    messages = _take(stub, pb.WatchExecutionsRequest(cursor=cursor), 1)
    EventStore(service.database).delete_before(T0 + timedelta(days=1), batch=100)  # the event retention ran
    with pytest.raises(grpc.RpcError) as caught:
        _take(stub, pb.WatchExecutionsRequest(cursor=messages[-1].cursor), 1)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(caught.value)[0] == "CURSOR_EXPIRED"


@pytest.fixture
def small_replica(database_url: str, clock: FakeClock) -> Iterator[Replica]:
    settings = Settings(
        database_url=database_url,
        grpc_address="127.0.0.1:0",
        migrate_on_start=False,
        metrics_address="",
        watch_max_streams=1,
    )
    svc = build(settings, clock=clock)
    svc.start()
    yield svc
    svc.stop()


def test_streams_beyond_the_limit_are_refused(small_replica: Replica) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{small_replica.port}") as channel:
        stub = pb_grpc.ScheduleServiceStub(channel)
        first = stub.WatchExecutions(pb.WatchExecutionsRequest(), timeout=20)
        next(iter(first))
        with pytest.raises(grpc.RpcError) as caught:
            _take(stub, pb.WatchExecutionsRequest(), 1)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.cancel()  # type: ignore[no-untyped-call]


@pytest.mark.postgres
def test_a_watcher_on_one_replica_sees_writes_of_another_at_once(
    postgres_url: str, clock: FakeClock, webhook: Webhook
) -> None:
    """Replica B polls only every 60 s: the events reach it through Postgres NOTIFY."""
    replicas = [
        build(
            Settings(
                database_url=postgres_url,
                grpc_address="127.0.0.1:0",
                migrate_on_start=False,
                metrics_address="",
                watch_poll_s=poll,
            ),
            clock=clock,
        )
        for poll in (0.5, 60.0)
    ]
    for replica in replicas:
        replica.start()
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{replicas[0].port}") as a_channel,
            grpc.insecure_channel(f"127.0.0.1:{replicas[1].port}") as b_channel,
        ):
            a, b = pb_grpc.ScheduleServiceStub(a_channel), pb_grpc.ScheduleServiceStub(b_channel)
            _register(a, "shared", webhook.url)
            call = b.WatchExecutions(pb.WatchExecutionsRequest(), timeout=10)
            stream = iter(call)
            next(stream)
            execution = a.RunTaskNow(pb.RunTaskNowRequest(name="shared")).execution
            events = [next(stream).event for _ in range(2)]  # well within the 10 s deadline, not 60 s
            call.cancel()  # type: ignore[no-untyped-call]
            assert [e.execution_id for e in events] == [execution.id] * 2
    finally:
        for replica in replicas:
            replica.stop()
