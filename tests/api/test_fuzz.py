"""Generated requests thrown at the gRPC and HTTP APIs: never INTERNAL / 500, never a half-written row."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.api.http import routes
from schedule_grpc.app import Replica
from tests.api.fuzz_support import (
    FUZZ,
    ROUTES,
    _struct,
    authorizations,
    bodies,
    durations,
    fuzzed,
    hostile_tokens,
    metadata,
    names,
    queries,
    schedules,
    segments,
    timezones,
)

__all__ = ["fuzzed"]  # the fixture the tests below use


def _count(stub: pb_grpc.ScheduleServiceStub) -> int:
    return len(stub.ListTasks(pb.ListTasksRequest()).tasks)


@FUZZ
@given(
    name=names,
    schedule=schedules,
    handler=st.sampled_from(["http", "", "nope"]),
    meta=metadata,
    timezone=timezones,
    max_retries=st.one_of(st.none(), st.integers(-5, 200)),
    multiplier=st.one_of(st.none(), st.floats(-1, 200, allow_nan=False)),
    timeout=durations,
    catchup=durations,
    overlap=st.integers(0, 5),
    follow_up=st.sampled_from(["get", "enable", "disable", "run", "history", "delete", "preview", "list", "recent"]),
    limit=st.integers(-(2**31), 2**31 - 1),
    token=st.one_of(st.text(max_size=12), hostile_tokens),
    start_seconds=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.just(253402214400)),
)
def test_grpc_never_fails_internally_nor_half_writes(
    fuzzed: Replica,
    name: str,
    schedule: str,
    handler: str,
    meta: dict[str, Any],
    timezone: str,
    max_retries: int | None,
    multiplier: float | None,
    timeout: duration_pb2.Duration | None,
    catchup: duration_pb2.Duration | None,
    overlap: int,
    follow_up: str,
    limit: int,
    token: str,
    start_seconds: int | None,
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{fuzzed.port}") as channel:
        stub = pb_grpc.ScheduleServiceStub(channel)
        before = _count(stub)
        request = pb.RegisterTaskRequest(
            name=name,
            schedule=schedule,
            handler=handler,
            metadata=_struct(meta),
            timezone=timezone,
            overlap_policy=overlap,  # type: ignore[arg-type]
        )
        if max_retries is not None:
            request.retry_policy.max_retries = max_retries
        if multiplier is not None:
            request.retry_policy.multiplier = multiplier
        if timeout is not None:
            request.timeout.CopyFrom(timeout)
        if catchup is not None:
            request.catchup_window.CopyFrom(catchup)
        try:
            task = stub.RegisterTask(request, timeout=30).task
        except grpc.RpcError as error:
            assert error.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), error.details()
            assert len(error.details() or "") < 1500, "an error echoes at most a bounded excerpt"
            assert _count(stub) == before, "a refused registration wrote a row"
        else:
            assert _count(stub) == before + 1
            assert stub.GetTask(pb.GetTaskRequest(name=task.name)).task == task

        calls: dict[str, Callable[[], object]] = {
            "get": lambda: stub.GetTask(pb.GetTaskRequest(name=name)),
            "enable": lambda: stub.EnableTask(pb.EnableTaskRequest(name=name)),
            "disable": lambda: stub.DisableTask(pb.DisableTaskRequest(name=name)),
            "run": lambda: stub.RunTaskNow(pb.RunTaskNowRequest(name=name), timeout=30),
            "history": lambda: stub.GetTaskHistory(pb.GetTaskHistoryRequest(name=name, limit=limit, page_token=token)),
            "delete": lambda: stub.UnregisterTask(pb.UnregisterTaskRequest(name=name)),
            "preview": lambda: stub.PreviewSchedule(
                pb.PreviewScheduleRequest(
                    schedule=schedule,
                    timezone=timezone,
                    count=limit % 200 - 50,
                    start_time=timestamp_pb2.Timestamp(seconds=start_seconds) if start_seconds is not None else None,
                )
            ),
            "list": lambda: stub.ListTasks(pb.ListTasksRequest(page_token=token)),
            "recent": lambda: stub.GetRecentExecutions(
                pb.GetRecentExecutionsRequest(
                    page_token=token,
                    start_time=timestamp_pb2.Timestamp(seconds=start_seconds) if start_seconds is not None else None,
                )
            ),
        }
        try:
            calls[follow_up]()
        except grpc.RpcError as error:
            assert error.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), error.details()
            assert len(error.details() or "") < 1500, "an error echoes at most a bounded excerpt"
        # Whatever happened, every stored row still reads back whole.
        for task in stub.ListTasks(pb.ListTasksRequest()).tasks:
            stub.GetTaskHistory(pb.GetTaskHistoryRequest(name=task.name))


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    verb=st.one_of(st.none(), st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])),
    segment=segments,
    body=bodies,
    query=queries,
    authorization=authorizations,
)
def test_http_never_answers_500_nor_half_writes(
    fuzzed: Replica,
    route: routes.Route,
    verb: str | None,
    segment: str,
    body: bytes,
    query: dict[str, str],
    authorization: str | None,
) -> None:
    path = routes._VARIABLE.sub(segment or "x", route.template)
    with httpx.Client(base_url=f"http://127.0.0.1:{fuzzed.http_port}", timeout=30) as http:
        before_names = {t["name"] for t in http.get("/api/tasks").json()["tasks"]}
        before = len(before_names)
        headers = {b"content-type": b"application/json"}
        if authorization is not None and "\r" not in authorization and "\n" not in authorization:
            headers[b"authorization"] = authorization.strip().encode("latin-1")
        response = http.request(verb or route.verb, path, params=query, content=body, headers=headers)
        assert response.status_code != 500 and response.status_code < 502, response.text
        assert len(response.content) < 4096 or response.status_code == 200, "an error echoes a bounded excerpt"
        payload = response.json()
        assert isinstance(payload["success"], bool)
        after = http.get("/api/tasks").json()
        created = route.method.name == "RegisterTask" and (verb or route.verb) == "POST" and response.status_code == 200
        if route.method.name == "InitializeDefaultTasks" and response.status_code == 200:
            # installs the defaults that are missing, touches nothing else
            assert after["count"] == len(before_names | {t["name"] for t in payload["tasks"]})
        else:
            assert after["count"] == before + (1 if created else 0) - (
                1 if route.method.name == "UnregisterTask" and response.status_code == 200 else 0
            )
        for task in after["tasks"]:
            assert http.get(f"/api/tasks/{urllib.parse.quote(task['name'], safe='')}").json()["task"] == task


def test_non_finite_metadata_numbers_are_invalid_not_internal(fuzzed: Replica) -> None:
    """Found by the property test above: a Struct may carry Infinity, which JSON cannot."""
    with grpc.insecure_channel(f"127.0.0.1:{fuzzed.port}") as channel:
        stub = pb_grpc.ScheduleServiceStub(channel)
        request = pb.RegisterTaskRequest(
            name="a", schedule="@daily", handler="http", metadata=_struct({"url": "http://127.0.0.1:9/", "x": 1e400})
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.RegisterTask(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _count(stub) == 0
