"""Alerts in the log are one short line; the email keeps the whole text, stack trace included."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from schedule_grpc.domain.models import ErrorCategory, Execution, ExecutionStatus, Task, Trigger
from schedule_grpc.execution.alerts import LogAlerts, dead_letter_email
from schedule_grpc.observability.logs import JsonFormatter

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TRACE = "Traceback (most recent call last):\n" + '  File "/srv/app/handlers/http.py", line 90, in run\n' * 60


def test_a_dead_letter_alert_logs_a_short_line_and_mails_the_stack_trace(caplog: pytest.LogCaptureFixture) -> None:
    task = Task(
        id="task-1",
        name="billing",
        schedule="@hourly",
        handler="http",
        enabled=True,
        metadata={},
        timezone="UTC",
        created_at=NOW,
        updated_at=NOW,
    )
    execution = Execution(
        id="exec-1",
        task_id="task-1",
        task_name="billing",
        trigger=Trigger.RETRY,
        scheduled_for=NOW,
        attempt=6,
        status=ExecutionStatus.FAILED,
        due_at=NOW,
        created_at=NOW,
        error="POST http://127.0.0.1:9/hook answered 503",
        error_category=ErrorCategory.NETWORK,
        traceback=TRACE,
    )
    email = dead_letter_email(execution, task, "dlq-1")
    assert TRACE in email.body and len(email.body) > 3000

    with caplog.at_level(logging.WARNING, logger="schedule_grpc.execution.alerts"):
        LogAlerts().send(email)
    [record] = caplog.records
    line = JsonFormatter().format(record)
    assert len(line) < 1000, len(line)
    assert "billing" in line and "answered 503" in line and "dlq-1" in line
    assert "Traceback" not in line and "/srv/app" not in line
