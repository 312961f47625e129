"""The fuzz corpus again, read as a client program would: every refusal carries a specific reason, in our words."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
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
    bodies,
    durations,
    fuzzed,
    metadata,
    names,
    queries,
    schedules,
    segments,
    timezones,
)
from tests.api.helpers import error_details

__all__ = ["fuzzed"]  # the fixture, shared with the property tests it extends

GENERIC = {"INVALID_ARGUMENT", "INVALID_FIELD_VALUE", "", "UNKNOWN", "INTERNAL"}
LEAKS = ("Traceback", "invalid literal", "Message type", 'File "', ".py", "schedule_grpc", "/usr/", "site-packages")


def _leaks(text: str, *sent: str) -> list[str]:
    """The interpreter's words in ``text``, once what the caller sent (which an error may quote back) is taken out."""
    for echoed in sorted(sent, key=len, reverse=True):
        if echoed:
            text = text.replace(echoed, "")
    return [leak for leak in LEAKS if leak in text]


@FUZZ
@given(
    name=names,
    schedule=schedules,
    handler=st.sampled_from(["http", "", "nope"]),
    meta=metadata,
    timezone=timezones,
    timeout=durations,
    overlap=st.integers(0, 5),
    limit=st.integers(-(2**31), 2**31 - 1),
    token=st.text(max_size=12),
)
def test_every_grpc_validation_error_has_a_specific_reason_and_field(
    fuzzed: Replica,
    name: str,
    schedule: str,
    handler: str,
    meta: dict[str, Any],
    timezone: str,
    timeout: Any,
    overlap: int,
    limit: int,
    token: str,
) -> None:
    request = pb.RegisterTaskRequest(
        name=name,
        schedule=schedule,
        handler=handler,
        metadata=_struct(meta),
        timezone=timezone,
        overlap_policy=overlap,  # type: ignore[arg-type]
    )
    if timeout is not None:
        request.timeout.CopyFrom(timeout)
    with grpc.insecure_channel(f"127.0.0.1:{fuzzed.port}") as channel:
        stub = pb_grpc.ScheduleServiceStub(channel)
        for call in (
            lambda: stub.RegisterTask(request, timeout=30),
            lambda: stub.GetTaskHistory(pb.GetTaskHistoryRequest(name=name, limit=limit, page_token=token)),
            lambda: stub.PreviewSchedule(pb.PreviewScheduleRequest(schedule=schedule, timezone=timezone, count=limit)),
        ):
            try:
                call()
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    continue
                reason, field = error_details(error)
                assert reason not in GENERIC, (reason, error.details())
                assert field, "the BadRequest names the field"
                assert not _leaks(error.details() or "", name, schedule, timezone, token), error.details()


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    verb=st.one_of(st.none(), st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])),
    segment=segments,
    body=bodies,
    query=queries,
)
def test_every_http_refusal_has_a_specific_reason_in_our_words(
    fuzzed: Replica, route: routes.Route, verb: str | None, segment: str, body: bytes, query: dict[str, str]
) -> None:
    path = routes._VARIABLE.sub(segment or "x", route.template)
    with httpx.Client(base_url=f"http://127.0.0.1:{fuzzed.http_port}", timeout=30) as http:
        response = http.request(
            verb or route.verb, path, params=query, content=body, headers={"content-type": "application/json"}
        )
    if response.status_code < 400:
        return
    payload = response.json()
    assert payload["reason"] not in GENERIC, payload
    assert payload["code"] != "UNIMPLEMENTED", payload
    sent = (segment, body.decode(errors="ignore"), *query.keys(), *query.values())
    assert not _leaks(payload["error"], *sent), payload


def test_limit_that_is_not_a_number_is_a_bad_parameter_named_limit(fuzzed: Replica) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{fuzzed.http_port}", timeout=30) as http:
        payload = http.get("/api/tasks/x/history", params={"limit": "abc"}).json()
    assert payload["reason"] == "BAD_QUERY_PARAMETER" and payload["error"].startswith("limit:"), payload
