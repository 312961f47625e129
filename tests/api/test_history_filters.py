"""History and recent executions filtered by task, status and time range, with cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica
from schedule_grpc.domain.models import ExecutionStatus
from tests.api.helpers import error_details
from tests.executor_rows import ExecutorRows
from tests.support import Webhook

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


@pytest.fixture
def history(service: Replica, stub: pb_grpc.ScheduleServiceStub, webhook: Webhook) -> dict[str, list[str]]:
    """Two tasks, an execution every hour for a day; every third one failed."""
    rows = ExecutorRows(service.database)
    ids: dict[str, list[str]] = {"a": [], "b": []}
    for name in ids:
        metadata = struct_pb2.Struct()
        metadata.update({"url": webhook.url})
        stub.RegisterTask(pb.RegisterTaskRequest(name=name, schedule="@hourly", handler="http", metadata=metadata))
    for hour in range(24):
        for name in ids:
            status = ExecutionStatus.FAILED if hour % 3 == 0 else ExecutionStatus.SUCCESS
            ids[name].append(rows.run(name, T0 + timedelta(hours=hour), status))
    return ids


def _all_pages(fetch: object, limit: int) -> list[str]:
    seen: list[str] = []
    token = ""
    while True:
        page = fetch(limit, token)  # type: ignore[operator]
        items = list(getattr(page, "history", None) or getattr(page, "executions", None) or [])
        assert len(items) <= limit
        seen += [e.id for e in items]
        token = page.next_page_token
        if not token:
            return seen


def test_history_by_status_and_time_range_pages_newest_first(
    stub: pb_grpc.ScheduleServiceStub, history: dict[str, list[str]]
) -> None:
    def fetch(limit: int, token: str) -> pb.GetTaskHistoryResponse:
        return stub.GetTaskHistory(
            pb.GetTaskHistoryRequest(
                name="a",
                limit=limit,
                page_token=token,
                statuses=[pb.EXECUTION_STATUS_FAILED],
                start_time=_ts(T0 + timedelta(hours=3)),
                end_time=_ts(T0 + timedelta(hours=18)),
            )
        )

    expected = [history["a"][h] for h in (15, 12, 9, 6, 3)]  # 18:00 is excluded, 03:00 included
    assert _all_pages(fetch, 2) == expected
    page = fetch(50, "").history
    assert all(e.status == pb.EXECUTION_STATUS_FAILED for e in page)
    assert [e.created_at.ToDatetime(tzinfo=UTC) for e in page] == [T0 + timedelta(hours=h) for h in (15, 12, 9, 6, 3)]


def test_recent_by_task_and_status(stub: pb_grpc.ScheduleServiceStub, history: dict[str, list[str]]) -> None:
    def fetch(limit: int, token: str) -> pb.GetRecentExecutionsResponse:
        return stub.GetRecentExecutions(
            pb.GetRecentExecutionsRequest(
                limit=limit, page_token=token, task_names=["b"], statuses=[pb.EXECUTION_STATUS_SUCCESS]
            )
        )

    expected = [history["b"][h] for h in range(23, -1, -1) if h % 3]
    assert _all_pages(fetch, 5) == expected
    everything = stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(limit=1000)).executions
    assert len(everything) == 48 and everything[0].id == history["b"][23]


def test_the_seed_limit_still_works(stub: pb_grpc.ScheduleServiceStub, history: dict[str, list[str]]) -> None:
    assert len(stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="a")).history) == 24
    assert [e.id for e in stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="a", limit=3)).history] == history["a"][
        :-4:-1
    ]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GetTaskHistoryRequest(name="a", statuses=[pb.EXECUTION_STATUS_UNSPECIFIED]), "statuses"),
        (pb.GetTaskHistoryRequest(name="a", start_time=_ts(T0), end_time=_ts(T0)), "end_time"),
    ],
)
def test_bad_history_filters_name_the_field(
    stub: pb_grpc.ScheduleServiceStub, history: dict[str, list[str]], request_: pb.GetTaskHistoryRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetTaskHistory(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(caught.value)[1] == field


def test_a_token_only_works_with_its_filter(stub: pb_grpc.ScheduleServiceStub, history: dict[str, list[str]]) -> None:
    token = stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(limit=1, task_names=["a"])).next_page_token
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(limit=1, task_names=["b"], page_token=token))
    assert error_details(caught.value)[1] == "page_token"
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(task_names=["not a name"]))
    assert error_details(caught.value)[1] == "task_names"
