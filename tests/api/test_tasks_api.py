"""Task management over a real gRPC server, on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from tests.api.helpers import error_details
from tests.support import FakeClock, Webhook


def _metadata(**values: object) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)  # type: ignore[arg-type]
    return s


def register(
    stub: pb_grpc.ScheduleServiceStub, name: str, url: str = "http://127.0.0.1:9/hook", **fields: object
) -> pb.Task:
    fields.setdefault("schedule", "*/5 * * * *")
    request = pb.RegisterTaskRequest(name=name, handler="http", metadata=_metadata(url=url), **fields)  # type: ignore[arg-type]
    return stub.RegisterTask(request).task


def test_register_returns_the_task_with_defaults_and_true_next_run(
    stub: pb_grpc.ScheduleServiceStub, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 3, 1, 12, 2, 30, tzinfo=UTC))
    response = stub.RegisterTask(
        pb.RegisterTaskRequest(
            name="daily-report",
            schedule="@daily",
            handler="http",
            timezone="Europe/Berlin",
            metadata=_metadata(url="https://example.test/hook", description="Daily report", category="reports"),
        )
    )
    task = response.task
    assert response.message == "Task daily-report registered successfully"
    assert task.id.startswith("task-") and task.name == "daily-report" and task.enabled
    assert task.timezone == "Europe/Berlin"
    # Midnight in Berlin (UTC+1 in March) is 23:00 UTC.
    assert task.next_run.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    assert task.created_at.ToDatetime(tzinfo=UTC) == clock.now()
    assert task.metadata["category"] == "reports"
    assert not task.HasField("last_run")
    assert task.retry_policy.max_retries == 5
    assert task.retry_policy.initial_delay.ToTimedelta() == timedelta(seconds=1)
    assert task.retry_policy.multiplier == 2
    assert task.overlap_policy == pb.OVERLAP_POLICY_SKIP
    assert stub.GetTask(pb.GetTaskRequest(name="daily-report")).task == task


def test_register_disabled_task_has_no_next_run(stub: pb_grpc.ScheduleServiceStub) -> None:
    task = register(stub, "off", enabled=False)
    assert not task.enabled and not task.HasField("next_run")


def test_register_keeps_custom_policies(stub: pb_grpc.ScheduleServiceStub) -> None:
    task = register(
        stub,
        "custom",
        retry_policy=pb.RetryPolicy(
            max_retries=0, initial_delay=duration_pb2.Duration(seconds=3), multiplier=1.5, jitter=True
        ),
        timeout=duration_pb2.Duration(seconds=42),
        overlap_policy=pb.OVERLAP_POLICY_QUEUE_ONE,
        catchup_window=duration_pb2.Duration(seconds=0),
        critical=True,
    )
    fetched = stub.GetTask(pb.GetTaskRequest(name="custom")).task
    assert fetched.retry_policy.max_retries == 0
    assert fetched.retry_policy.initial_delay.seconds == 3
    assert fetched.retry_policy.multiplier == 1.5 and fetched.retry_policy.jitter
    assert fetched.timeout.seconds == 42 and fetched.critical
    assert fetched.overlap_policy == pb.OVERLAP_POLICY_QUEUE_ONE
    assert fetched.catchup_window.seconds == 0
    assert fetched == task


def test_duplicate_name_is_already_exists(stub: pb_grpc.ScheduleServiceStub) -> None:
    register(stub, "dup")
    with pytest.raises(grpc.RpcError) as caught:
        register(stub, "dup", schedule="@hourly")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_details(caught.value)[0] == "TASK_EXISTS"
    assert stub.GetTask(pb.GetTaskRequest(name="dup")).task.schedule == "*/5 * * * *"


BAD_REGISTRATIONS = [
    ({"name": ""}, "name"),
    ({"name": "has space"}, "name"),
    ({"name": "x" * 129}, "name"),
    ({"name": "-leading-dash"}, "name"),
    ({"schedule": ""}, "schedule"),
    ({"schedule": "61 * * * *"}, "schedule"),
    ({"schedule": "0 0 30 2 *"}, "schedule"),
    ({"schedule": "* * * * * *"}, "schedule"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"handler": ""}, "handler"),
    ({"handler": "no-such-handler"}, "handler"),
    ({"metadata": {}}, "metadata.url"),
    ({"metadata": {"url": "ftp://x"}}, "metadata.url"),
    ({"metadata": {"url": "http://x", "method": "BREW"}}, "metadata.method"),
    ({"metadata": {"url": "http://x", "timeoutSeconds": -1}}, "metadata.timeoutSeconds"),
    ({"metadata": {"url": "http://x", "expectedStatus": 99}}, "metadata.expectedStatus"),
    ({"metadata": {"url": "http://x", "blob": "y" * 70_000}}, "metadata"),
    ({"retry_policy": pb.RetryPolicy(max_retries=-1)}, "retry_policy.max_retries"),
    ({"retry_policy": pb.RetryPolicy(multiplier=0.5)}, "retry_policy.multiplier"),
    (
        {"retry_policy": pb.RetryPolicy(initial_delay=duration_pb2.Duration(seconds=-1))},
        "retry_policy.initial_delay",
    ),
    (
        {
            "retry_policy": pb.RetryPolicy(
                initial_delay=duration_pb2.Duration(seconds=10), max_delay=duration_pb2.Duration(seconds=5)
            )
        },
        "retry_policy.max_delay",
    ),
    ({"timeout": duration_pb2.Duration(seconds=0)}, "timeout"),
    ({"timeout": duration_pb2.Duration(seconds=90000)}, "timeout"),
    ({"catchup_window": duration_pb2.Duration(seconds=-5)}, "catchup_window"),
    ({"overlap_policy": 42}, "overlap_policy"),
]
# What a program reads from ErrorInfo.reason for each kind of bad field (README, "Errors").
REASONS = {
    "name": "INVALID_TASK_NAME",
    "schedule": "INVALID_SCHEDULE",
    "timezone": "INVALID_TIME_ZONE",
    "handler": "UNKNOWN_HANDLER",
    "metadata": "INVALID_METADATA",
    "retry_policy": "INVALID_RETRY_POLICY",
    "timeout": "INVALID_DURATION",
    "catchup_window": "INVALID_DURATION",
    "overlap_policy": "INVALID_ENUM_VALUE",
}


@pytest.mark.parametrize(("fields", "field"), BAD_REGISTRATIONS)
def test_bad_registration_names_the_field_and_writes_nothing(
    stub: pb_grpc.ScheduleServiceStub, fields: dict[str, object], field: str
) -> None:
    request: dict[str, object] = {
        "name": "good-name",
        "schedule": "@hourly",
        "handler": "http",
        "metadata": {"url": "http://127.0.0.1:9/"},
    }
    request.update(fields)
    request["metadata"] = _metadata(**request["metadata"])  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as caught:
        stub.RegisterTask(pb.RegisterTaskRequest(**request))  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = fields.get(field) == ""
    assert error_details(caught.value) == ("MISSING_REQUIRED_FIELD" if missing else REASONS[field.split(".")[0]], field)
    assert field.split(".")[0] in (caught.value.details() or "")
    assert list(stub.ListTasks(pb.ListTasksRequest()).tasks) == []


def test_list_tasks_pages_in_name_order(stub: pb_grpc.ScheduleServiceStub) -> None:
    for name in ["c", "a", "e", "b", "d"]:
        register(stub, name)
    first = stub.ListTasks(pb.ListTasksRequest(page_size=2))
    assert [t.name for t in first.tasks] == ["a", "b"] and first.next_page_token
    second = stub.ListTasks(pb.ListTasksRequest(page_size=2, page_token=first.next_page_token))
    assert [t.name for t in second.tasks] == ["c", "d"]
    third = stub.ListTasks(pb.ListTasksRequest(page_size=2, page_token=second.next_page_token))
    assert [t.name for t in third.tasks] == ["e"] and third.next_page_token == ""
    assert len(stub.ListTasks(pb.ListTasksRequest()).tasks) == 5


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ListTasksRequest(page_size=-1), "page_size"),
        (pb.ListTasksRequest(page_size=1001), "page_size"),
        (pb.ListTasksRequest(page_token="garbage!"), "page_token"),
    ],
)
def test_bad_list_requests_are_invalid_argument(
    stub: pb_grpc.ScheduleServiceStub, request_: pb.ListTasksRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListTasks(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(caught.value)[1] == field


def test_disable_and_enable_change_next_run(stub: pb_grpc.ScheduleServiceStub, clock: FakeClock) -> None:
    register(stub, "toggle", schedule="0 * * * *")
    disabled = stub.DisableTask(pb.DisableTaskRequest(name="toggle"))
    assert disabled.message == "Task toggle disabled"
    assert not disabled.task.enabled and not disabled.task.HasField("next_run")
    assert not stub.GetTask(pb.GetTaskRequest(name="toggle")).task.enabled
    clock.set(datetime(2026, 3, 1, 15, 30, tzinfo=UTC))
    enabled = stub.EnableTask(pb.EnableTaskRequest(name="toggle"))
    assert enabled.message == "Task toggle enabled" and enabled.task.enabled
    assert enabled.task.next_run.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)


def test_next_run_stays_true_as_time_passes(stub: pb_grpc.ScheduleServiceStub, clock: FakeClock) -> None:
    clock.set(datetime(2026, 3, 1, 12, 1, tzinfo=UTC))
    register(stub, "every5")
    assert stub.GetTask(pb.GetTaskRequest(name="every5")).task.next_run.ToDatetime(tzinfo=UTC) == datetime(
        2026, 3, 1, 12, 5, tzinfo=UTC
    )
    clock.set(datetime(2026, 3, 1, 13, 7, tzinfo=UTC))
    assert stub.GetTask(pb.GetTaskRequest(name="every5")).task.next_run.ToDatetime(tzinfo=UTC) == datetime(
        2026, 3, 1, 13, 10, tzinfo=UTC
    )


@pytest.mark.parametrize("rpc", ["GetTask", "EnableTask", "DisableTask", "UnregisterTask", "RunTaskNow"])
def test_unknown_task_is_not_found(stub: pb_grpc.ScheduleServiceStub, rpc: str) -> None:
    request_type = getattr(pb, f"{rpc}Request")
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, rpc)(request_type(name="ghost"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(caught.value)[0] == "TASK_NOT_FOUND"


def test_unregister_deletes_the_task_and_keeps_its_history(stub: pb_grpc.ScheduleServiceStub, webhook: Webhook) -> None:
    register(stub, "gone", url=webhook.url)
    ran = stub.RunTaskNow(pb.RunTaskNowRequest(name="gone")).execution
    response = stub.UnregisterTask(pb.UnregisterTaskRequest(name="gone"))
    assert response.message == "Task gone unregistered"
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetTask(pb.GetTaskRequest(name="gone"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert [e.id for e in stub.GetRecentExecutions(pb.GetRecentExecutionsRequest()).executions] == [ran.id]
    assert [e.id for e in stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="gone")).history] == [ran.id]


def test_list_handlers_names_http_with_its_description(stub: pb_grpc.ScheduleServiceStub) -> None:
    response = stub.ListHandlers(pb.ListHandlersRequest())
    assert "http" in response.handlers
    detail = next(h for h in response.handler_details if h.name == "http")
    assert "url" in detail.description and detail.category == "integration"
