"""/metrics passes Prometheus' own linter, `promtool check metrics` (CI installs it; required there)."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica
from schedule_grpc.domain.models import ExecutionStatus
from tests.executor_rows import ExecutorRows
from tests.support import Webhook, scrape_when

PROMTOOL = shutil.which("promtool")
if PROMTOOL is None and os.environ.get("SCHEDULE_TEST_REQUIRE_PROMTOOL"):
    raise RuntimeError("promtool is required (SCHEDULE_TEST_REQUIRE_PROMTOOL) but not installed")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus)")
def test_metrics_pass_promtool_check(service: Replica, stub: pb_grpc.ScheduleServiceStub, webhook: Webhook) -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"url": webhook.url})
    stub.RegisterTask(pb.RegisterTaskRequest(name="linted", schedule="@hourly", handler="http", metadata=metadata))
    with pytest.raises(grpc.RpcError):
        stub.GetTask(pb.GetTaskRequest(name="absent"))
    rows = ExecutorRows(service.database)
    rows.run("linted", datetime(2026, 3, 1, 12, tzinfo=UTC), ExecutionStatus.SUCCESS)
    rows.run("linted", datetime(2026, 3, 1, 13, tzinfo=UTC), ExecutionStatus.FAILED)
    scrape_when(service, ("schedule_executions_total", (("outcome", "failed"), ("task", "linted"))), 1)
    url = f"http://127.0.0.1:{service.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read()
    assert b"schedule_execution_duration_seconds_bucket" in text and b"process_cpu_seconds_total" in text
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
