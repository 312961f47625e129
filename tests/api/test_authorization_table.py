"""One authorization table: every RPC x {no credential, another service, the owner, admin}, over gRPC and
the HTTP shim, on a service's ``http`` task and on an admin's data-handler task. Where a call is refused,
the task is exactly as before."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica
from tests.api.shim_support import AUTH_TOKENS, bearer, serve
from tests.support import FakeClock

OK, UNAUTH, DENIED, NOT_FOUND = "OK", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND"
CALLERS = {"none": None, "other": "beta-secret", "owner": "alpha-secret", "admin": "root-secret"}
HTTP_CODES = {200: OK, 401: UNAUTH, 403: DENIED, 404: NOT_FOUND}
# rpc -> expected answer per caller, on a task owned by alpha ("owner"). On the admin's task, "owner"
# (alpha) is refused where "other" is.
TABLE: dict[str, dict[str, str]] = {
    "GetTask": {"other": OK, "owner": OK, "admin": OK},
    "ListTasks": {"other": OK, "owner": OK, "admin": OK},
    "GetTaskHistory": {"other": OK, "owner": OK, "admin": OK},
    "GetRecentExecutions": {"other": OK, "owner": OK, "admin": OK},
    "ListHandlers": {"other": OK, "owner": OK, "admin": OK},
    "PreviewSchedule": {"other": OK, "owner": OK, "admin": OK},
    "ListDeadLetters": {"other": OK, "owner": OK, "admin": OK},
    "DisableTask": {"other": DENIED, "owner": OK, "admin": OK},
    "EnableTask": {"other": DENIED, "owner": OK, "admin": OK},
    "CancelExecution": {"other": NOT_FOUND, "owner": NOT_FOUND, "admin": NOT_FOUND},
    "RedriveDeadLetter": {"other": DENIED, "owner": DENIED, "admin": NOT_FOUND},
    "DiscardDeadLetter": {"other": DENIED, "owner": DENIED, "admin": NOT_FOUND},
    "InitializeDefaultTasks": {"other": DENIED, "owner": DENIED, "admin": OK},
    "RegisterTask": {"other": OK, "owner": OK, "admin": OK},  # a new task of the same kind (see below)
    "WatchExecutions": {"other": OK, "owner": OK, "admin": OK},  # gRPC only: the shim routes unary calls
    "RunTaskNow": {"other": DENIED, "owner": OK, "admin": OK},
    "UnregisterTask": {"other": DENIED, "owner": OK, "admin": OK},
}
# Registering a data-handler task is an admin's; alpha and beta are refused whichever task they own.
DATA_REGISTRATION = {"other": DENIED, "owner": DENIED, "admin": OK}


@pytest.fixture
def secured(database_url: str, clock: FakeClock) -> Iterator[Replica]:
    # the table, not the limiters: many refused credentials in a row from one address
    generous = {"rate_limit_burst": 100_000, "expensive_rate_limit_burst": 100_000, "auth_failure_burst": 100_000}
    with serve(database_url, clock, auth_tokens=AUTH_TOKENS, **generous) as service:
        yield service


def _first(stream: Any) -> object:
    message = next(iter(stream))
    stream.cancel()
    return message


def _new_task(name: str, handler: str, caller: str) -> pb.RegisterTaskRequest:
    return pb.RegisterTaskRequest(
        name=f"{name}-by-{caller}", schedule="@daily", handler=handler, metadata=_meta(handler)
    )


def _meta(handler: str) -> struct_pb2.Struct:
    metadata = struct_pb2.Struct()
    # Connection refused at once, and after the egress policy a denied loopback address: no network.
    metadata.update({"url": "http://127.0.0.1:9/hook"} if handler == "http" else {"batchSize": 10})
    return metadata


def _grpc_calls(
    stub: pb_grpc.ScheduleServiceStub, name: str, handler: str, caller: str
) -> dict[str, Callable[[Any], object]]:
    return {
        "GetTask": lambda m: stub.GetTask(pb.GetTaskRequest(name=name), metadata=m),
        "ListTasks": lambda m: stub.ListTasks(pb.ListTasksRequest(), metadata=m),
        "GetTaskHistory": lambda m: stub.GetTaskHistory(pb.GetTaskHistoryRequest(name=name), metadata=m),
        "GetRecentExecutions": lambda m: stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(), metadata=m),
        "ListHandlers": lambda m: stub.ListHandlers(pb.ListHandlersRequest(), metadata=m),
        "PreviewSchedule": lambda m: stub.PreviewSchedule(pb.PreviewScheduleRequest(schedule="@daily"), metadata=m),
        "ListDeadLetters": lambda m: stub.ListDeadLetters(pb.ListDeadLettersRequest(), metadata=m),
        "DisableTask": lambda m: stub.DisableTask(pb.DisableTaskRequest(name=name), metadata=m),
        "EnableTask": lambda m: stub.EnableTask(pb.EnableTaskRequest(name=name), metadata=m),
        "CancelExecution": lambda m: stub.CancelExecution(pb.CancelExecutionRequest(execution_id="exec_x"), metadata=m),
        "RedriveDeadLetter": lambda m: stub.RedriveDeadLetter(pb.RedriveDeadLetterRequest(id="dl_x"), metadata=m),
        "DiscardDeadLetter": lambda m: stub.DiscardDeadLetter(pb.DiscardDeadLetterRequest(id="dl_x"), metadata=m),
        "InitializeDefaultTasks": lambda m: stub.InitializeDefaultTasks(pb.InitializeDefaultTasksRequest(), metadata=m),
        "RegisterTask": lambda m: stub.RegisterTask(_new_task(name, handler, caller), metadata=m),
        "WatchExecutions": lambda m: _first(stub.WatchExecutions(pb.WatchExecutionsRequest(), metadata=m, timeout=10)),
        "RunTaskNow": lambda m: stub.RunTaskNow(pb.RunTaskNowRequest(name=name), metadata=m, timeout=60),
        "UnregisterTask": lambda m: stub.UnregisterTask(pb.UnregisterTaskRequest(name=name), metadata=m),
    }


def _http_calls(
    http: httpx.Client, name: str, handler: str, caller: str
) -> dict[str, Callable[[dict[str, str]], httpx.Response]]:
    metadata: dict[str, Any] = {"url": "http://127.0.0.1:9/hook"} if handler == "http" else {"batchSize": 10}
    new = {"name": f"{name}-by-{caller}", "schedule": "@daily", "handler": handler, "metadata": metadata}
    return {
        "GetTask": lambda h: http.get(f"/api/tasks/{name}", headers=h),
        "ListTasks": lambda h: http.get("/api/tasks", headers=h),
        "GetTaskHistory": lambda h: http.get(f"/api/tasks/{name}/history", headers=h),
        "GetRecentExecutions": lambda h: http.get("/api/executions", headers=h),
        "ListHandlers": lambda h: http.get("/api/handlers", headers=h),
        "PreviewSchedule": lambda h: http.post("/api/schedules:preview", json={"schedule": "@daily"}, headers=h),
        "ListDeadLetters": lambda h: http.get("/api/dead-letters", headers=h),
        "DisableTask": lambda h: http.post(f"/api/tasks/{name}/disable", headers=h),
        "EnableTask": lambda h: http.post(f"/api/tasks/{name}/enable", headers=h),
        "CancelExecution": lambda h: http.post("/api/executions/exec_x:cancel", headers=h),
        "RedriveDeadLetter": lambda h: http.post("/api/dead-letters/dl_x:redrive", headers=h),
        "DiscardDeadLetter": lambda h: http.delete("/api/dead-letters/dl_x", headers=h),
        "InitializeDefaultTasks": lambda h: http.post("/api/init", headers=h),
        "RegisterTask": lambda h: http.post("/api/tasks", json=new, headers=h),
        "RunTaskNow": lambda h: http.post(f"/api/tasks/{name}/run", headers=h),
        "UnregisterTask": lambda h: http.delete(f"/api/tasks/{name}", headers=h),
    }


def _register(stub: pb_grpc.ScheduleServiceStub, name: str, handler: str, token: str) -> None:
    request = pb.RegisterTaskRequest(name=name, schedule="@daily", handler=handler, metadata=_meta(handler))
    stub.RegisterTask(request, metadata=tuple(bearer(token).items()))


def _names(stub: pb_grpc.ScheduleServiceStub) -> list[str]:
    return [t.name for t in stub.ListTasks(pb.ListTasksRequest(), metadata=tuple(bearer("root-secret").items())).tasks]


def _snapshot(stub: pb_grpc.ScheduleServiceStub, name: str) -> object:
    try:
        return stub.GetTask(pb.GetTaskRequest(name=name), metadata=tuple(bearer("root-secret").items())).task
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return None


@pytest.mark.parametrize("kind", ["http", "data"])
@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_every_rpc_answers_each_caller_as_the_table_says(secured: Replica, kind: str, transport: str) -> None:
    name, handler, owner_token = (
        ("hook", "http", "alpha-secret") if kind == "http" else ("sweep", "cleanup-expired-sessions", "root-secret")
    )
    with (
        grpc.insecure_channel(f"127.0.0.1:{secured.port}") as channel,
        httpx.Client(base_url=f"http://127.0.0.1:{secured.http_port}", timeout=30) as http,
    ):
        stub = pb_grpc.ScheduleServiceStub(channel)
        _register(stub, name, handler, owner_token)
        for caller, token in CALLERS.items():
            grpc_calls, http_calls = _grpc_calls(stub, name, handler, caller), _http_calls(http, name, handler, caller)
            for rpc, row in TABLE.items():
                if transport == "http" and rpc == "WatchExecutions":
                    continue
                expected = UNAUTH if token is None else row[caller]
                if kind == "data" and caller == "owner":
                    expected = row["other"]  # alpha does not own the admin's task
                if kind == "data" and rpc == "RegisterTask" and token is not None:
                    expected = DATA_REGISTRATION[caller]
                before, names = _snapshot(stub, name), _names(stub)
                answer: Any = None
                if transport == "grpc":
                    try:
                        reply = grpc_calls[rpc](tuple(bearer(token).items()) if token else ())
                        answer = json_format.MessageToDict(reply)  # type: ignore[arg-type]
                        got = OK
                    except grpc.RpcError as error:
                        got = error.code().name
                else:
                    response = http_calls[rpc](bearer(token) if token else {})
                    got, answer = HTTP_CODES.get(response.status_code, str(response.status_code)), response.json()
                assert (caller, rpc, got) == (caller, rpc, expected)
                if got != OK:
                    assert _snapshot(stub, name) == before, f"{rpc} by {caller} changed the task although refused"
                    assert _names(stub) == names, f"{rpc} by {caller} added or removed a task although refused"
                elif rpc == "GetTask":  # details for the owner and admins; the rest see that it exists
                    owns = caller == "admin" or (caller == "owner" and kind == "http")
                    assert answer["task"]["name"] == name and answer["task"]["schedule"] == "@daily"
                    assert bool(answer["task"].get("metadata")) is owns, (caller, answer)
                if rpc == "UnregisterTask" and got == OK:
                    _register(stub, name, handler, owner_token)  # for the next caller's row
