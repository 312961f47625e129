"""A run's log lines, ours and the HTTP client's, carry the task and execution ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.observability import logs
from tests.support import Webhook, eventually


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure("INFO", "json")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    logging.captureWarnings(False)


def test_a_run_logs_with_its_ids(json_logs: io.StringIO, stub: pb_grpc.ScheduleServiceStub, webhook: Webhook) -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"url": webhook.url})
    task = stub.RegisterTask(pb.RegisterTaskRequest(name="ping", schedule="@daily", handler="http", metadata=metadata))
    execution = stub.RunTaskNow(pb.RunTaskNowRequest(name="ping")).execution

    def logged() -> list[dict[str, Any]] | None:
        records = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.startswith("{")]
        ours = [r for r in records if r.get("execution_id") == execution.id]
        return ours if any(r["message"] == "execution finished" for r in ours) else None

    ours = eventually(logged, timeout_s=10)  # the executor logs right after recording, which RunTaskNow may beat
    queued = next(r for r in ours if r["message"] == "execution queued")
    assert queued["logger"] == "schedule_grpc.usecases.runs" and queued["rpc"] == "RunTaskNow"
    # the executor records the outcome (the handler itself, and httpx, log from its worker process)
    finished = next(r for r in ours if r["message"] == "execution finished")
    assert finished["logger"] == "schedule_grpc.execution.recorder" and finished["status"] == "success"
    assert finished["task_id"] == task.task.id and finished["task_name"] == "ping" and finished["trigger"] == "manual"
