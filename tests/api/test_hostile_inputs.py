"""Inputs a careless or hostile caller sends: each one answers INVALID_ARGUMENT (HTTP 400) naming the field,
writes nothing, and echoes at most a bounded excerpt. Over gRPC and through the HTTP shim, on both databases."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica
from schedule_grpc.domain import tokens
from schedule_grpc.domain.history import HistoryFilter
from tests.api.helpers import error_details
from tests.api.shim_support import serve
from tests.support import FakeClock

URL = "http://127.0.0.1:9/"
LONG_ZONE = "Europe/" + "x" * 5000


@pytest.fixture
def hostile(database_url: str, clock: FakeClock) -> Iterator[Replica]:
    with serve(database_url, clock, metrics_address="") as service:
        yield service


@pytest.fixture
def channel(hostile: Replica) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{hostile.port}") as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.ScheduleServiceStub:
    return pb_grpc.ScheduleServiceStub(channel)


@pytest.fixture
def http(hostile: Replica) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{hostile.http_port}", timeout=30) as client:
        yield client


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def _refused(call: Any, field: str) -> grpc.RpcError:
    """The call fails with INVALID_ARGUMENT naming ``field``, and a message small enough for any client."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert error_details(error)[1] == field, error.details()
    assert len(error.details() or "") < 1500
    return error


def _token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _history_token(name: str, created_at: str) -> str:
    return tokens.encode(f"history:{name}:{HistoryFilter().validate().fingerprint()}", f"{created_at}|exec-1")


def _nested_struct(levels: int) -> struct_pb2.Struct:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"x": value}
    return _struct({"url": URL, "body": value})


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _register_bytes_nested(levels: int) -> bytes:
    value = struct_pb2.Value(number_value=1).SerializeToString()
    struct = b""
    for _ in range(levels):
        struct = _field(1, _field(1, b"x") + _field(2, value))  # Struct.fields entry {"x": value}
        value = _field(5, struct)  # Value.struct_value
    metadata = pb.RegisterTaskRequest.DESCRIPTOR.fields_by_name["metadata"].number
    head = pb.RegisterTaskRequest(name="t", schedule="@daily", handler="http").SerializeToString()
    return head + _field(metadata, struct)


def test_page_tokens_that_do_not_decode_to_ours_are_invalid(stub: pb_grpc.ScheduleServiceStub) -> None:
    stub.RegisterTask(
        pb.RegisterTaskRequest(name="a", schedule="@daily", handler="http", metadata=_struct({"url": URL}))
    )
    for token in [_token("[" * 1500), _token('{"l":' * 1000), "A" * 100_000, _token('{"l":"tasks","a":1}')]:
        _refused(lambda token=token: stub.ListTasks(pb.ListTasksRequest(page_token=token)), "page_token")
    for created_at in ["2026-01-01T00:00:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "nope"]:
        token = _history_token("a", created_at)
        _refused(
            lambda token=token: stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="a", page_token=token)), "page_token"
        )


def test_instants_outside_what_a_timestamp_or_a_datetime_holds_are_invalid(stub: pb_grpc.ScheduleServiceStub) -> None:
    end_of_time = timestamp_pb2.Timestamp()
    end_of_time.FromJsonString("9999-12-31T00:00:00Z")
    preview = pb.PreviewScheduleRequest(schedule="@daily", count=5, start_time=end_of_time)
    _refused(lambda: stub.PreviewSchedule(preview), "start_time")
    for seconds, nanos in [(2**62, 0), (-(2**62), 0), (0, -1), (0, 2_000_000_000)]:
        bad = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
        _refused(
            lambda bad=bad: stub.PreviewSchedule(pb.PreviewScheduleRequest(schedule="@daily", start_time=bad)),
            "start_time",
        )
        _refused(lambda bad=bad: stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(end_time=bad)), "end_time")
        _refused(lambda bad=bad: stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="a", start_time=bad)), "start_time")


def test_metadata_a_database_or_a_protocol_would_choke_on_is_invalid_and_writes_nothing(
    stub: pb_grpc.ScheduleServiceStub, channel: grpc.Channel
) -> None:
    cases: list[tuple[struct_pb2.Struct, str]] = [
        (_struct({"url": URL, "body": {"note": "a\x00b"}}), "metadata.body.note"),
        (_struct({"url": URL, "body": {"a\x00": 1}}), "metadata.body"),
        (_struct({"url": URL, "headers": {"X-Split": "a\r\nInjected: yes"}}), "metadata.headers.X-Split"),
        (_struct({"url": URL, "headers": {"Bad Name": "x"}}), "metadata.headers"),
        (_nested_struct(25), "metadata.body" + ".x" * 19),
    ]
    for metadata, field in cases:
        request = pb.RegisterTaskRequest(name="t", schedule="@daily", handler="http", metadata=metadata)
        _refused(lambda request=request: stub.RegisterTask(request), field)
    # 40 levels: past protobuf's own nesting limit, so no client library builds it; sent as raw bytes
    raw = channel.unary_unary(
        "/schedule.v1.ScheduleService/RegisterTask",
        request_serializer=bytes,
        response_deserializer=pb.RegisterTaskResponse.FromString,
    )
    _refused(lambda: raw(_register_bytes_nested(40)), "metadata")
    grpc_target = _struct({"target": "127.0.0.1:9", "method": "a.B/C", "headers": {"x-a": "1\n2"}})
    request = pb.RegisterTaskRequest(name="t", schedule="@daily", handler="grpc", metadata=grpc_target)
    _refused(lambda: stub.RegisterTask(request), "metadata.headers.x-a")
    assert list(stub.ListTasks(pb.ListTasksRequest()).tasks) == []


def test_a_huge_value_is_echoed_as_a_bounded_excerpt(stub: pb_grpc.ScheduleServiceStub, http: httpx.Client) -> None:
    request = pb.RegisterTaskRequest(name="t", schedule="@daily", handler="http", timezone=LONG_ZONE)
    error = _refused(lambda: stub.RegisterTask(request), "timezone")
    assert "more characters" in (error.details() or "")
    body = {"name": "t", "schedule": "@daily", "handler": "http", "timezone": LONG_ZONE, "metadata": {"url": URL}}
    response = http.post("/api/tasks", json=body)
    assert response.status_code == 400 and len(response.content) < 2000
    assert http.get("/api/tasks").json()["count"] == 0


def test_http_refuses_a_non_ascii_authorization_and_inexact_integers(http: httpx.Client) -> None:
    response = http.get("/api/tasks", headers={b"authorization": "Bearer caf\xe9".encode("latin-1")})
    assert response.status_code == 400 and "authorization" in response.json()["error"]
    body = {"name": "t", "schedule": "@daily", "handler": "http", "metadata": {"url": URL, "body": {"n": 2**53 + 1}}}
    response = http.post("/api/tasks", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 400 and "metadata.body.n" in response.json()["error"]
    body["metadata"] = {"url": URL, "body": {"n": 2**53}}  # exact: accepted, read back the same
    assert http.post("/api/tasks", json=body).status_code == 200
    assert http.get("/api/tasks/t").json()["task"]["metadata"]["body"]["n"] == 2**53
    response = http.get("/api/tasks", params={"pageToken": _token("[" * 1500)})
    assert response.status_code == 400 and response.json()["code"] == "INVALID_ARGUMENT"
    assert http.get("/api/tasks").json()["count"] == 1
