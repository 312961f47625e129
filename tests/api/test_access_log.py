"""One access-log line per RPC, with method, caller, code and duration; successful calls sampled by a setting."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from tests.api.shim_support import AUTH_TOKENS, bearer, serve
from tests.support import FakeClock

ALPHA = tuple(bearer("alpha-secret").items())


def _calls(
    database_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture, sample: float
) -> list[logging.LogRecord]:
    caplog.set_level(logging.INFO, logger="schedule_grpc.access")
    with (
        serve(database_url, clock, auth_tokens=AUTH_TOKENS, access_log_sample=sample) as service,
        grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = pb_grpc.ScheduleServiceStub(channel)
        stub.ListTasks(pb.ListTasksRequest(), metadata=ALPHA)
        with pytest.raises(grpc.RpcError):
            stub.ListTasks(pb.ListTasksRequest())  # no token
        with pytest.raises(grpc.RpcError):
            stub.GetTask(pb.GetTaskRequest(name="nope"), metadata=ALPHA)
    return [r for r in caplog.records if r.name == "schedule_grpc.access"]


@pytest.fixture
def every_call(
    database_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> Iterator[list[logging.LogRecord]]:
    yield _calls(database_url, clock, caplog, 1.0)


def test_each_rpc_writes_one_line_with_method_caller_code_and_duration(every_call: list[logging.LogRecord]) -> None:
    lines = [(r.rpc, r.caller, r.code) for r in every_call]  # type: ignore[attr-defined]
    assert lines == [
        ("ListTasks", "alpha", "OK"),
        ("ListTasks", "", "UNAUTHENTICATED"),
        ("GetTask", "alpha", "NOT_FOUND"),
    ]
    assert all(r.duration_ms >= 0 for r in every_call)  # type: ignore[attr-defined]
    assert every_call[0].getMessage().startswith("ListTasks alpha OK ")
    assert every_call[0].levelno == logging.INFO and every_call[2].levelno == logging.WARNING


def test_with_sampling_off_only_failed_calls_are_written(
    database_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    records = _calls(database_url, clock, caplog, 0.0)
    assert [r.code for r in records] == ["UNAUTHENTICATED", "NOT_FOUND"]  # type: ignore[attr-defined]
