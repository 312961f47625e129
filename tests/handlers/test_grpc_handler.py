"""The grpc handler calls a real gRPC server's method through its reflection, with the occurrence's
identity as metadata, a deadline, and TLS with call credentials."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import ErrorCategory
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed, lane_of
from schedule_grpc.handlers.grpc import GrpcHandler
from schedule_grpc.handlers.outbound import MAX_BODY_CHARS
from tests.handler_support import LOOPBACK, GrpcTestServer, context, self_signed_certificate

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _call(metadata: dict[str, object], **kwargs: object) -> object:
    handler = GrpcHandler(egress=LOOPBACK)
    handler.validate(metadata)
    return handler.run(context("nightly-sync", metadata, at=AT, **kwargs))  # type: ignore[arg-type]


def test_the_request_json_is_encoded_through_reflection_and_the_occurrence_travels_as_metadata(
    grpc_server: GrpcTestServer,
) -> None:
    result = _call(
        {"target": grpc_server.target, "method": "grpc.health.v1.Health/Check", "request": {"service": "billing"},
         "headers": {"x-tenant": "acme"}},
        attempt=3,
    )  # fmt: skip
    assert result == {"method": "grpc.health.v1.Health/Check", "response": {"status": "SERVING"}}
    service, metadata = grpc_server.health.calls[-1]
    assert service == "billing"
    ctx: HandlerContext = context("nightly-sync", at=AT)
    assert metadata["idempotency-key"] == ctx.idempotency_key == "task-test:2026-03-01T12:00:00Z"
    assert metadata["x-schedule-scheduled-for"] == "2026-03-01T12:00:00Z"
    assert metadata["x-schedule-attempt"] == "3" and metadata["x-schedule-task"] == "nightly-sync"
    assert metadata["x-tenant"] == "acme"


def test_a_slow_method_fails_at_the_deadline_as_a_timeout(grpc_server: GrpcTestServer) -> None:
    grpc_server.health.delay_s = 2.0
    with pytest.raises(HandlerFailed) as caught:
        _call({"target": grpc_server.target, "method": "grpc.health.v1.Health/Check", "timeoutSeconds": 0.3})
    assert caught.value.category is ErrorCategory.TIMEOUT


@pytest.mark.parametrize(
    ("method", "request_json", "message"),
    [
        ("nope.v1.Missing/Call", {}, "does not offer nope.v1.Missing"),
        ("grpc.health.v1.Health/Nope", {}, "has no method Nope"),
        ("grpc.health.v1.Health/Watch", {}, "streaming"),
        ("grpc.health.v1.Health/Check", {"servce": "typo"}, "does not fit grpc.health.v1.HealthCheckRequest"),
    ],
)
def test_calls_that_cannot_be_made_fail_saying_why(
    grpc_server: GrpcTestServer, method: str, request_json: dict[str, object], message: str
) -> None:
    with pytest.raises(HandlerFailed, match=message) as caught:
        _call({"target": grpc_server.target, "method": method, "request": request_json})
    assert caught.value.category is ErrorCategory.LOGIC


def test_an_unreachable_target_is_a_network_failure() -> None:
    with pytest.raises(HandlerFailed, match="not reachable") as caught:
        _call({"target": "127.0.0.1:9", "method": "a.B/C", "timeoutSeconds": 0.5})
    assert caught.value.category is ErrorCategory.NETWORK


def test_tls_with_a_bearer_token(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server = GrpcTestServer(tls=(cert, key))
    try:
        result = _call(
            {"target": f"localhost:{server.port}", "method": "grpc.health.v1.Health/Check", "tls": True,
             "caCertificate": cert.decode(), "bearerToken": "s3cret"}
        )  # fmt: skip
        assert result == {"method": "grpc.health.v1.Health/Check", "response": {"status": "SERVING"}}
        assert server.health.calls[-1][1]["authorization"] == "Bearer s3cret"
        with pytest.raises(HandlerFailed):  # plaintext to a TLS port does not get through
            _call({"target": f"localhost:{server.port}", "method": "grpc.health.v1.Health/Check", "timeoutSeconds": 1})
    finally:
        server.close()


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"method": "a.B/C"}, "metadata.target"),
        ({"target": "h:1"}, "metadata.method"),
        ({"target": "h:1", "method": "a.B/C", "request": [1]}, "metadata.request"),
        ({"target": "h:1", "method": "a.B/C", "bearerToken": "t"}, "metadata.tls"),
        ({"target": "h:1", "method": "a.B/C", "tls": True, "caCertificate": "x"}, "metadata.caCertificate"),
        ({"target": "h:1", "method": "a.B/C", "headers": {"X-Up": "1"}}, "metadata.headers"),
        ({"target": "h:1", "method": "a.B/C", "timeoutSeconds": 0}, "metadata.timeoutSeconds"),
    ],
)
def test_bad_metadata_names_the_key(metadata: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        GrpcHandler().validate(metadata)
    assert caught.value.field == field


def test_the_default_policy_refuses_a_loopback_target_by_its_resolved_address(grpc_server: GrpcTestServer) -> None:
    handler = GrpcHandler()  # the default policy: internal ranges denied
    assert lane_of(handler) == "remote"
    for target in (grpc_server.target, f"localhost:{grpc_server.port}"):
        with pytest.raises(HandlerFailed, match=r"egress denied: 127\.0\.0\.1 is loopback") as caught:
            handler.run(context("x", {"target": target, "method": "grpc.health.v1.Health/Check"}, at=AT))
        assert caught.value.category is ErrorCategory.POLICY
    assert grpc_server.health.calls == []  # the server never saw a call


def test_a_name_that_does_not_resolve_is_a_network_failure() -> None:
    with pytest.raises(HandlerFailed, match="does not resolve") as caught:
        _call({"target": "no-such-host.invalid:443", "method": "a.B/C", "timeoutSeconds": 2})
    assert caught.value.category is ErrorCategory.NETWORK


def test_a_large_answer_is_kept_as_a_bounded_excerpt() -> None:
    from schedule_grpc.handlers.grpc import _bounded

    assert _bounded({"status": "SERVING"}) == {"status": "SERVING"}
    big = _bounded({"rows": ["x" * 100] * 100})
    assert isinstance(big, str) and big.startswith('{"rows": ["xxx') and len(big) == MAX_BODY_CHARS + 1
