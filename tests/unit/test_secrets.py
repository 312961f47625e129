"""Secrets in metadata: what callers are shown, what is scrubbed from recorded outcomes, how references resolve."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schedule_grpc import secrets
from schedule_grpc.errors import InvalidArgument
from schedule_grpc.models import ExecutionStatus, Outcome


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
