"""The /status page, read in a real headless browser (Debian's chromium) with a screenshot artefact.

Locally the browser test is skipped when chromium is absent, unless SCHEDULE_TEST_REQUIRE_BROWSER=1
(CI sets it, and .ci/run installs chromium).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf import struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica
from schedule_grpc.domain.models import ExecutionStatus
from tests.executor_rows import ExecutorRows
from tests.support import FakeClock, Webhook

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def _url(service: Replica, path: str) -> str:
    return f"http://127.0.0.1:{service.metrics_port}{path}"


@pytest.fixture
def populated(service: Replica, stub: pb_grpc.ScheduleServiceStub, webhook: Webhook, clock: FakeClock) -> Replica:
    rows = ExecutorRows(service.database)
    for name in ("billing-sync", "nightly-report"):
        metadata = struct_pb2.Struct()
        metadata.update({"url": webhook.url, "note": "<script>alert(1)</script>"})
        stub.RegisterTask(pb.RegisterTaskRequest(name=name, schedule="*/15 * * * *", handler="http", metadata=metadata))
    now = clock.now()
    for quarter in range(4 * 20):
        status = ExecutionStatus.FAILED if quarter % 7 == 0 else ExecutionStatus.SUCCESS
        rows.run("billing-sync", now - timedelta(minutes=15 * quarter + 1), status)
    rows.run("nightly-report", now - timedelta(hours=3), ExecutionStatus.SUCCESS)
    # a task in its own zone, never run; and one whose occurrence failed three times and was dead-lettered
    stub.RegisterTask(
        pb.RegisterTaskRequest(
            name="alpha-cleanup", schedule="0 3 * * *", timezone="Europe/Berlin", handler="http", metadata=metadata
        )
    )
    stub.RegisterTask(
        pb.RegisterTaskRequest(name="zeta-export", schedule="0 * * * *", handler="http", metadata=metadata)
    )
    occurrence = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    last = ""
    for attempt in (1, 2, 3):
        last = rows.run(
            "zeta-export", occurrence, ExecutionStatus.FAILED, attempt=attempt, late=timedelta(seconds=attempt)
        )
    rows.dead_letter(last, occurrence + timedelta(seconds=10))
    return service


def _section(html: str, table_id: str) -> str:
    start = html.index(f'<table id="{table_id}">')
    return html[start : html.index("</table>", start)]


def test_failing_tasks_come_first_and_each_failed_occurrence_is_one_row(populated: Replica) -> None:
    with urllib.request.urlopen(_url(populated, "/status"), timeout=10) as response:
        html = response.read().decode()
    tasks = _section(html, "tasks")
    order = sorted(("alpha-cleanup", "billing-sync", "nightly-report", "zeta-export"), key=tasks.index)
    assert order == ["billing-sync", "zeta-export", "alpha-cleanup", "nightly-report"]
    assert "(Europe/Berlin)" in tasks and "CET" in tasks  # next run in the task's own zone too
    letters = _section(html, "dead-letters")
    assert "zeta-export" in letters and "dlq-" in letters and "billing-sync" not in letters
    failures = _section(html, "failures")
    assert failures.count("zeta-export") == 1 and "3 failed (last: attempt 3)" in failures
    assert 'class="tick"' in html and ">0</text>" in html  # the chart's axis has numbers


def test_status_page_lists_tasks_outcomes_failures_and_a_chart(populated: Replica) -> None:
    with urllib.request.urlopen(_url(populated, "/status"), timeout=10) as response:
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        html = response.read().decode()
    assert "billing-sync" in html and "nightly-report" in html
    assert html.count('class="bar failed"') > 0 and html.count('class="bar success"') > 0
    assert "83 executions" in html or "84 executions" in html
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(_url(populated, "/nothing"), timeout=10)
    assert caught.value.code == 404


def test_status_page_in_a_headless_browser(populated: Replica, tmp_path: Path) -> None:
    if BROWSER is None:
        if os.environ.get("SCHEDULE_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required (SCHEDULE_TEST_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium not installed")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"status-page-{populated.database.dialect.name}.png"
    screenshot.unlink(missing_ok=True)
    common = [
        BROWSER,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1400",
    ]
    dom = subprocess.run(
        [*common, "--dump-dom", _url(populated, "/status")], capture_output=True, text=True, timeout=90, check=True
    ).stdout
    assert '<table id="tasks">' in dom and "billing-sync" in dom and "nightly-report" in dom
    assert dom.count("<rect") >= 20  # the chart was parsed as SVG: bars for the last 20 hours
    subprocess.run(
        [*common, f"--screenshot={screenshot}", _url(populated, "/status")], capture_output=True, timeout=90, check=True
    )
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one
