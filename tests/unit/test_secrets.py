"""Secrets in metadata: what callers are shown, what is scrubbed from recorded outcomes, how references resolve."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import ExecutionStatus, Outcome
from schedule_grpc.security import secrets


@pytest.mark.parametrize(
    ("metadata", "shown"),
    [
        ({"headers": {"Authorization": "Bearer abc123"}}, {"headers": {"Authorization": "<redacted>"}}),
        ({"bearerToken": "t0ken", "target": "h:1"}, {"bearerToken": "<redacted>", "target": "h:1"}),
        ({"url": "https://u:p4ss@h/x?api_key=k&a=1"}, {"url": "https://<redacted>@h/x?api_key=<redacted>&a=1"}),
        ({"headers": {"X-Api-Key": {"secretRef": "k"}}}, {"headers": {"X-Api-Key": {"secretRef": "k"}}}),
        ({"table": "sessions", "maxAgeDays": 3}, {"table": "sessions", "maxAgeDays": 3}),
        ({"author": "ann", "maxTokens": 512}, {"author": "ann", "maxTokens": 512}),
        ({"note": "Basic setup, token-free"}, {"note": "Basic setup, token-free"}),
    ],
)
def test_credentials_are_shown_redacted_and_other_values_as_they_are(metadata: dict, shown: dict) -> None:  # type: ignore[type-arg]
    assert secrets.redact(metadata) == shown


def test_an_outcome_is_scrubbed_of_every_secret_value_of_the_task(tmp_path: Path) -> None:
    (tmp_path / "billing").write_text("filesecret99\n")
    metadata = {
        "url": "https://svc:pw-77x@h/?token=qq-55",
        "headers": {"Authorization": "Bearer tok-123", "X-B": {"secretRef": "billing"}},
    }
    outcome = Outcome(
        ExecutionStatus.FAILED,
        datetime(2026, 1, 1, tzinfo=UTC),
        result={"echo": "tok-123 filesecret99"},
        error="POST https://svc:pw-77x@h/?token=qq-55 answered 500: pw-77x",
        traceback="... tok-123 ...",
    )
    clean = secrets.scrub_outcome(outcome, metadata, str(tmp_path))
    text = f"{clean.error} {clean.result} {clean.traceback}"
    for secret in ("pw-77x", "qq-55", "tok-123", "filesecret99"):
        assert secret not in text
    assert clean.status is ExecutionStatus.FAILED and "answered 500" in (clean.error or "")


def test_references_resolve_from_files_and_refuse_escapes(tmp_path: Path) -> None:
    (tmp_path / "billing-token").write_text("v1\n")
    ref = {"headers": {"Authorization": {"secretRef": "billing-token", "prefix": "Bearer "}}}
    assert secrets.resolve(ref, str(tmp_path)) == {"headers": {"Authorization": "Bearer v1"}}
    (tmp_path / "billing-token").write_text("v2\n")  # rotated: the next execution reads the new value
    assert secrets.resolve(ref, str(tmp_path))["headers"] == {"Authorization": "Bearer v2"}
    with pytest.raises(secrets.SecretUnavailable, match="does not exist"):
        secrets.resolve({"x": {"secretRef": "nope"}}, str(tmp_path))
    with pytest.raises(secrets.SecretUnavailable, match="not a file name"):
        secrets.resolve({"x": {"secretRef": "../etc/passwd"}}, str(tmp_path))
    with pytest.raises(InvalidArgument, match=r"metadata\.headers\.Authorization"):
        secrets.for_validation({"headers": {"Authorization": {"secretRef": "a", "extra": 1}}})


def test_log_records_of_any_logger_carry_urls_without_credentials(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from schedule_grpc.observability import logs

    logs.install_redaction()
    logs.install_redaction()  # idempotent: one wrapper, not two
    caplog.set_level(logging.INFO)
    url = "https://svc:pw-4242x@api.example.com/v1?api_key=k-99887&page=2"
    logging.getLogger("httpx").info('HTTP Request: %s %s "%s"', "POST", url, "HTTP/1.1 500")
    logging.getLogger("schedule_grpc.test").warning("calling with Bearer abcdefgh12345678")
    text = caplog.text
    assert "pw-4242x" not in text and "k-99887" not in text and "abcdefgh12345678" not in text
    assert "https://<redacted>@api.example.com/v1?api_key=<redacted>&page=2" in text


def test_the_allowed_tables_refuse_the_services_own_in_any_case_or_schema() -> None:
    from schedule_grpc.handlers import tables

    allowed = tables.parse_handler_tables("cleanup-old-generations=generations|archive.Generations")[
        "cleanup-old-generations"
    ]
    assert allowed == frozenset({"generations", "archive.generations"})
    tables.check("GENERATIONS", "metadata.table", allowed)
    tables.check("archive.generations", "metadata.table", allowed)
    for name, says in [
        ("other.generations", "not one this handler may touch"),
        ("pg_catalog.pg_authid", "not one this handler may touch"),
        ("sqlite_master", "not one this handler may touch"),
        ("Scheduled_Tasks", "own tables"),
        ("public.alembic_version", "own tables"),
    ]:
        with pytest.raises(InvalidArgument, match=says):
            tables.check(name, "metadata.table", allowed | {name.lower()} if says == "own tables" else allowed)
    with pytest.raises(ValueError, match="own tables"):
        tables.parse_handler_tables("update-analytics=task_executions")
