"""A secret planted in a task's metadata is never shown: not by any RPC, the HTTP shim, the status page,
the logs, the alert emails (a real SMTP server) or error messages. The webhook receiving the task's
call echoes what it got, so the secret is in the failure's raw text and must be scrubbed from it."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica, build
from schedule_grpc.observability import logs
from tests.api.shim_support import AUTH_TOKENS, bearer
from tests.execution.conftest import replica_settings
from tests.execution.smtp import SmtpServer
from tests.support import FakeClock, Webhook

HEADER_SECRET = "hdr-s3cret-7781"
URL_PASSWORD = "pw-s3cret-4411"
QUERY_SECRET = "q-s3cret-9902"
FILE_SECRET = "file-s3cret-1234"
PLANTED = (HEADER_SECRET, URL_PASSWORD, QUERY_SECRET, FILE_SECRET)


@pytest.fixture
def replica(database_url: str, clock: FakeClock, smtp: SmtpServer, tmp_path: Path) -> Iterator[Replica]:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "billing-token").write_text(FILE_SECRET + "\n")
    settings = replica_settings(
        database_url,
        smtp,
        auth_tokens=AUTH_TOKENS,
        http_address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",
        secrets_dir=str(secrets_dir),
        egress_allow="127.0.0.0/8",  # the receiver is on loopback
    )
    service = build(settings, clock=clock)
    service.start()
    yield service
    service.stop()


def _leaks(text: str) -> list[str]:
    return [secret for secret in PLANTED if secret in text]


def test_a_planted_secret_appears_on_no_surface(
    replica: Replica, smtp: SmtpServer, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    logs.install_redaction()
    caplog.set_level(logging.DEBUG)
    webhook.status = 500  # fails, so the error text (with the URL and the echoed request) is recorded
    host = webhook.url.removeprefix("http://")
    metadata = struct_pb2.Struct()
    metadata.update(
        {
            "url": f"http://svc:{URL_PASSWORD}@{host}?api_key={QUERY_SECRET}",
            "headers": {"X-Api-Key": HEADER_SECRET, "X-Billing": {"secretRef": "billing-token"}},
        }
    )
    webhook.reply = {"echo": {"key": HEADER_SECRET, "billing": FILE_SECRET, "pw": URL_PASSWORD}}
    seen: list[str] = []
    alpha = tuple(bearer("alpha-secret").items())
    with grpc.insecure_channel(f"127.0.0.1:{replica.port}") as channel:
        stub = pb_grpc.ScheduleServiceStub(channel)
        registered = stub.RegisterTask(
            pb.RegisterTaskRequest(
                name="billing",
                schedule="@daily",
                handler="http",
                metadata=metadata,
                critical=True,
                retry_policy=pb.RetryPolicy(max_retries=0),
            ),
            metadata=alpha,
        )
        seen.append(str(registered))
        ran = stub.RunTaskNow(pb.RunTaskNowRequest(name="billing"), metadata=alpha, timeout=60)
        assert not ran.success and "answered 500" in ran.message
        seen.append(str(ran))
        # The receiver got the real values: the secrets were used, only never shown.
        received = webhook.requests[0]
        assert received.headers["X-Api-Key"] == HEADER_SECRET
        assert received.headers["X-Billing"] == FILE_SECRET and QUERY_SECRET in received.path
        for token in ("alpha-secret", "beta-secret", "root-secret"):
            who = tuple(bearer(token).items())
            seen.append(str(stub.GetTask(pb.GetTaskRequest(name="billing"), metadata=who)))
            seen.append(str(stub.ListTasks(pb.ListTasksRequest(), metadata=who)))
            seen.append(str(stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="billing"), metadata=who)))
            seen.append(str(stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(), metadata=who)))
            seen.append(str(stub.ListDeadLetters(pb.ListDeadLettersRequest(), metadata=who)))
        full = pb.EXECUTION_VIEW_FULL
        seen.append(str(stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="billing", view=full), metadata=alpha)))
        audit = stub.ListAuditEntries(pb.ListAuditEntriesRequest(), metadata=tuple(bearer("root-secret").items()))
        assert audit.entries, "the registration and the run are in the trail"
        seen.append(str(audit))
    with httpx.Client(base_url=f"http://127.0.0.1:{replica.http_port}", timeout=30) as http:
        for token in ("alpha-secret", "root-secret"):
            for path in ("/api/tasks", "/api/tasks/billing", "/api/tasks/billing/history?view=full", "/api/executions"):
                answer = http.get(path, headers=bearer(token))
                assert answer.status_code == 200
                seen.append(answer.text)
        seen.append(http.post("/api/tasks/billing/run", headers=bearer("alpha-secret")).text)
        seen.append(http.get("/api/audit", headers=bearer("root-secret")).text)
    with urllib.request.urlopen(f"http://127.0.0.1:{replica.metrics_port}/status", timeout=10) as page:
        status_page = page.read().decode()
    assert "billing" in status_page  # the task and its outcome are there; with credentials on, not its error
    assert "answered 500" not in status_page
    seen.append(status_page)
    emails = smtp.inbox.wait_for(1)
    assert emails, "the critical task's failure was alerted"
    seen.extend(m.as_string() for m in emails)
    seen.append("\n".join(r.getMessage() + json.dumps(vars(r), default=str) for r in caplog.records))

    assert [_leaks(text) for text in seen if _leaks(text)] == []
    # Redacted, with a way to tell a value is set, for the owner.
    owner_view = seen[0]
    assert "<redacted>" in owner_view and "billing-token" in owner_view


def test_a_missing_secret_file_fails_the_attempt_with_the_policy_category(replica: Replica) -> None:
    alpha = tuple(bearer("alpha-secret").items())
    metadata: dict[str, Any] = {"url": "http://127.0.0.1:9/", "headers": {"Authorization": {"secretRef": "absent"}}}
    struct = struct_pb2.Struct()
    struct.update(metadata)
    with grpc.insecure_channel(f"127.0.0.1:{replica.port}") as channel:
        stub = pb_grpc.ScheduleServiceStub(channel)
        stub.RegisterTask(
            pb.RegisterTaskRequest(name="absent", schedule="@daily", handler="http", metadata=struct), metadata=alpha
        )
        ran = stub.RunTaskNow(pb.RunTaskNowRequest(name="absent"), metadata=alpha, timeout=60)
    assert not ran.success
    assert ran.execution.error_category == pb.ERROR_CATEGORY_POLICY
    assert "secret 'absent' does not exist" in ran.execution.error
