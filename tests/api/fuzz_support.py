"""The fuzz tests' generated inputs: hostile names, schedules, metadata, tokens, HTTP bodies and queries,
and the service they are thrown at."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import duration_pb2, struct_pb2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schedule.v1 import schedule_service_pb2 as pb

from schedule_grpc.api.http import routes
from schedule_grpc.app import Replica
from tests.api.shim_support import serve
from tests.support import FakeClock

SERVICE = pb.DESCRIPTOR.services_by_name["ScheduleService"]
ROUTES = routes.routes_for(SERVICE)
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

names = st.one_of(st.sampled_from(["a", "task-1", "x" * 128, "x" * 129, "-bad", "a b", ""]), st.text(max_size=20))
schedules = st.one_of(
    st.sampled_from(["@daily", "*/5 * * * *", "0 0 30 2 *", "61 * * * *", "0 2 * * 1-5", "@reboot", ""]),
    st.text(alphabet="0123456789*/,- @abcdefghijklmnopqrstuvwxyz", max_size=20),
)
timezones = st.sampled_from(
    ["", "UTC", "Europe/Berlin", "America/New_York", "Mars/Olympus", "../etc/passwd", "UTC\x00", "Europe/" + "x" * 5000]
)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# page tokens a hostile caller makes: nested JSON, huge, a listing's shape with the wrong types or instants
hostile_tokens = st.sampled_from(
    [
        _b64("[" * 1500),
        _b64('{"l":' * 900),
        "A" * 5000,
        _b64('{"l":"tasks","a":{}}'),
        _b64('{"l":"history:a:x","a":"2026-01-01T00:00:00|e"}'),
        _b64('{"l":"history:a:x","a":"9999-12-31T23:59:59-14:00|e"}'),
    ]
)


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(levels):
        value = {"x": value}
    return value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
urls = st.sampled_from(["http://127.0.0.1:9/", "ftp://x", "", "not a url"])
metadata = st.one_of(
    st.fixed_dictionaries(
        {"url": urls},
        optional={
            "method": st.sampled_from(["GET", "BREW"]),
            "x": json_values,
            "headers": st.dictionaries(st.sampled_from(["X-A", "Bad Name", "x-b"]), st.text(max_size=6), max_size=2),
            "body": st.integers(1, 28).map(_nested),  # up to what a protobuf client can still encode
        },
    ),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
durations = st.one_of(st.none(), st.integers(-100, 200_000).map(lambda s: duration_pb2.Duration(seconds=s)))


@pytest.fixture
def fuzzed(database_url: str, clock: FakeClock) -> Iterator[Replica]:
    with serve(database_url, clock) as service:
        yield service


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


segments = st.one_of(names, st.text(max_size=12)).map(lambda s: urllib.parse.quote(s, safe=""))
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=40),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"name": names, "schedule": schedules, "handler": st.sampled_from(["http", "x"])},
        optional={
            "metadata": metadata,
            "timezone": timezones,
            "enabled": json_values,
            "overlapPolicy": st.sampled_from(["skip", "allow", "queue_one", "never", 3, "OVERLAP_POLICY_SKIP"]),
            "retryPolicy": st.dictionaries(st.sampled_from(["maxRetries", "multiplier", "initialDelay"]), json_values),
            "timeout": st.sampled_from(["5s", "-1s", "1.5s", "forever", 7]),
        },
    ).map(lambda v: json.dumps(v).encode()),
)
queries = st.dictionaries(
    st.sampled_from(["limit", "pageToken", "page_size", "colour", "startTime"]),
    st.one_of(st.text(max_size=8), hostile_tokens, st.sampled_from(["9999-12-31T23:59:59Z", "10000-01-01T00:00:00Z"])),
    max_size=2,
)
# what a careless client puts in the authorization header: nothing, garbage, non-ASCII (latin-1 on the wire)
authorizations = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=12),
)
