"""RunTaskNow, history and recent executions, and PreviewSchedule over a real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from tests.api.helpers import error_details
from tests.support import FakeClock, Webhook


def _register(stub: pb_grpc.ScheduleServiceStub, name: str, **metadata: object) -> pb.Task:
    s = struct_pb2.Struct()
    s.update(metadata)  # type: ignore[arg-type]
    return stub.RegisterTask(pb.RegisterTaskRequest(name=name, schedule="@hourly", handler="http", metadata=s)).task


def test_run_now_calls_the_webhook_and_records_success(
    stub: pb_grpc.ScheduleServiceStub, webhook: Webhook, clock: FakeClock
) -> None:
    task = _register(stub, "ping", url=webhook.url, body={"hello": "world"}, headers={"X-Custom": "1"})
    response = stub.RunTaskNow(pb.RunTaskNowRequest(name="ping"))
    assert response.success and response.message == "Task ping executed successfully"
    [received] = webhook.requests
    assert received.method == "POST" and received.body == {"hello": "world"}
    scheduled = clock.now().isoformat().replace("+00:00", "Z")
    assert received.headers["X-Schedule-Task"] == "ping"
    assert received.headers["X-Schedule-Attempt"] == "1"
    assert received.headers["X-Schedule-Scheduled-For"] == scheduled
    assert received.headers["Idempotency-Key"] == f"{task.id}:{scheduled}"
    assert received.headers["X-Custom"] == "1"

    [execution] = stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="ping")).history
    assert execution.id == response.execution.id and execution.id.startswith("exec-")
    assert execution.status == pb.EXECUTION_STATUS_SUCCESS
    assert execution.trigger == pb.EXECUTION_TRIGGER_MANUAL and execution.attempt == 1
    assert execution.task_id == task.id and execution.task_name == "ping"
    assert json_format.MessageToDict(execution.result) == {"status": 200, "body": {"ok": True}}
    assert execution.HasField("duration_ms") and execution.HasField("completed_at")
    assert stub.GetTask(pb.GetTaskRequest(name="ping")).task.last_run == execution.started_at


def test_run_now_reports_a_failing_webhook(stub: pb_grpc.ScheduleServiceStub, webhook: Webhook) -> None:
    webhook.status = 503
    _register(stub, "flaky", url=webhook.url)
    response = stub.RunTaskNow(pb.RunTaskNowRequest(name="flaky"))
    assert not response.success and "503" in response.message
    [execution] = stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="flaky")).history
    assert execution.status == pb.EXECUTION_STATUS_FAILED
    assert execution.error_category == pb.ERROR_CATEGORY_NETWORK
    assert "503" in execution.error and execution.traceback == ""  # listings leave it out by default
    full = pb.GetTaskHistoryRequest(name="flaky", view=pb.EXECUTION_VIEW_FULL)
    assert "HandlerFailed" in stub.GetTaskHistory(full).history[0].traceback
    assert not execution.HasField("result")


def test_unexpected_4xx_is_a_logic_error_and_expected_status_is_honoured(
    stub: pb_grpc.ScheduleServiceStub, webhook: Webhook
) -> None:
    webhook.status = 404
    _register(stub, "missing", url=webhook.url)
    assert not stub.RunTaskNow(pb.RunTaskNowRequest(name="missing")).success
    [failed] = stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="missing")).history
    assert failed.error_category == pb.ERROR_CATEGORY_LOGIC
    _register(stub, "expects-404", url=webhook.url, expectedStatus=[404, 410], method="DELETE")
    assert stub.RunTaskNow(pb.RunTaskNowRequest(name="expects-404")).success
    assert webhook.requests[-1].method == "DELETE"


def test_unreachable_webhook_is_a_network_error(stub: pb_grpc.ScheduleServiceStub) -> None:
    _register(stub, "nowhere", url="http://127.0.0.1:9/closed")
    response = stub.RunTaskNow(pb.RunTaskNowRequest(name="nowhere"))
    assert not response.success
    assert response.execution.error_category == pb.ERROR_CATEGORY_NETWORK


def test_slow_webhook_times_out(stub: pb_grpc.ScheduleServiceStub, webhook: Webhook) -> None:
    webhook.delay_s = 1.0
    _register(stub, "slow", url=webhook.url, timeoutSeconds=0.2)
    response = stub.RunTaskNow(pb.RunTaskNowRequest(name="slow"))
    assert not response.success
    assert response.execution.error_category == pb.ERROR_CATEGORY_TIMEOUT


def test_history_is_newest_first_and_pages(
    stub: pb_grpc.ScheduleServiceStub, webhook: Webhook, clock: FakeClock
) -> None:
    _register(stub, "often", url=webhook.url)
    _register(stub, "other", url=webhook.url)
    ids = []
    for _ in range(7):
        clock.advance(timedelta(minutes=1))
        ids.append(stub.RunTaskNow(pb.RunTaskNowRequest(name="often")).execution.id)
    stub.RunTaskNow(pb.RunTaskNowRequest(name="other"))
    seen: list[str] = []
    token = ""
    while True:
        page = stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="often", limit=3, page_token=token))
        assert len(page.history) <= 3
        seen += [e.id for e in page.history]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    starts = [e.started_at.ToDatetime() for e in stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="often")).history]
    assert starts == sorted(starts, reverse=True)

    recent = stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(limit=2))
    assert [e.task_name for e in recent.executions] == ["other", "often"]
    assert recent.executions[1].id == ids[-1]
    rest = stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(limit=100, page_token=recent.next_page_token))
    assert [e.id for e in rest.executions] == ids[-2::-1] and rest.next_page_token == ""


def test_history_token_of_another_listing_is_rejected(stub: pb_grpc.ScheduleServiceStub, webhook: Webhook) -> None:
    _register(stub, "a", url=webhook.url)
    for _ in range(2):
        stub.RunTaskNow(pb.RunTaskNowRequest(name="a"))
    token = stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(limit=1)).next_page_token
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="a", page_token=token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(caught.value)[1] == "page_token"
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(limit=5000))
    assert error_details(caught.value)[1] == "limit"


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def test_preview_schedule_in_a_time_zone(stub: pb_grpc.ScheduleServiceStub) -> None:
    response = stub.PreviewSchedule(
        pb.PreviewScheduleRequest(
            schedule="0 2 * * *",
            timezone="America/New_York",
            start_time=_ts(datetime(2026, 3, 6, 12, tzinfo=UTC)),
        )
    )
    got = [t.ToDatetime(tzinfo=UTC) for t in response.next_run_times]
    # 02:00 EST is 07:00 UTC; 2026-03-08 02:00 does not exist (clocks jump to 03:00 EDT = 07:00 UTC),
    # cron runs the job at the jump; from then on 02:00 EDT is 06:00 UTC.
    assert got == [
        datetime(2026, 3, 7, 7, tzinfo=UTC),
        datetime(2026, 3, 8, 7, tzinfo=UTC),
        datetime(2026, 3, 9, 6, tzinfo=UTC),
        datetime(2026, 3, 10, 6, tzinfo=UTC),
        datetime(2026, 3, 11, 6, tzinfo=UTC),
    ]


def test_preview_defaults_to_five_after_now(stub: pb_grpc.ScheduleServiceStub, clock: FakeClock) -> None:
    clock.set(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    response = stub.PreviewSchedule(pb.PreviewScheduleRequest(schedule="@hourly"))
    assert [t.ToDatetime(tzinfo=UTC) for t in response.next_run_times] == [
        datetime(2026, 3, 1, h, tzinfo=UTC) for h in range(13, 18)
    ]
    assert len(stub.PreviewSchedule(pb.PreviewScheduleRequest(schedule="@hourly", count=100)).next_run_times) == 100


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.PreviewScheduleRequest(schedule="not a cron"), "schedule"),
        (pb.PreviewScheduleRequest(schedule="@reboot"), "schedule"),
        (pb.PreviewScheduleRequest(schedule="@daily", timezone="Nowhere/City"), "timezone"),
        (pb.PreviewScheduleRequest(schedule="@daily", count=101), "count"),
        (pb.PreviewScheduleRequest(schedule="@daily", count=-1), "count"),
    ],
)
def test_preview_rejects_bad_input(
    stub: pb_grpc.ScheduleServiceStub, request_: pb.PreviewScheduleRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.PreviewSchedule(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(caught.value)[1] == field
