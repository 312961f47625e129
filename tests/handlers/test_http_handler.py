"""The http handler posts to a real loopback server over aiohttp: the occurrence travels as headers, the
result is the status and a bounded JSON excerpt, errors quote the answer as JSON without the URL's
secrets, and every connection passes the egress policy (redirects are not followed)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import ErrorCategory
from schedule_grpc.handlers.base import HandlerFailed, lane_of
from schedule_grpc.handlers.http import HttpHandler
from schedule_grpc.handlers.outbound import MAX_BODY_CHARS, safe_url
from schedule_grpc.security.egress import EgressPolicy
from tests.handler_support import LOOPBACK, Answer, Receiver, context

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def call(metadata: dict[str, Any], *, egress: EgressPolicy = LOOPBACK, attempt: int = 1) -> Any:
    handler = HttpHandler(egress=egress)
    handler.validate(metadata)
    return handler.run(context("invoices", metadata, at=AT, attempt=attempt))


def test_it_is_a_remote_handler_posting_json_with_the_occurrence_as_headers(receiver: Receiver) -> None:
    assert lane_of(HttpHandler()) == "remote"
    result = call(
        {"url": receiver.url("/hook?tenant=7"), "body": {"run": 1}, "headers": {"X-Tenant": "acme"}}, attempt=2
    )
    assert result == {"status": 200, "body": {"ok": True}}
    [(path, headers, body)] = receiver.requests
    assert path == "/hook?tenant=7" and json.loads(body) == {"run": 1}
    assert headers["Idempotency-Key"] == "task-test:2026-03-01T12:00:00Z"
    assert headers["X-Schedule-Scheduled-For"] == "2026-03-01T12:00:00Z"
    assert headers["X-Schedule-Attempt"] == "2" and headers["X-Schedule-Task"] == "invoices"
    assert headers["X-Tenant"] == "acme" and headers["Content-Type"] == "application/json"


def test_an_error_answer_is_quoted_as_json_and_the_url_loses_its_credentials_and_query(receiver: Receiver) -> None:
    receiver.answer = Answer(status=500, body=b'{"ok": true}')
    url = f"http://alice:hunter2@127.0.0.1:{receiver.port}/hook?api_key=s3cret"
    with pytest.raises(HandlerFailed) as caught:
        call({"url": url})
    assert str(caught.value) == f'POST http://127.0.0.1:{receiver.port}/hook answered 500: {{"ok": true}}'
    assert caught.value.category is ErrorCategory.NETWORK  # 5xx: worth a retry
    assert receiver.requests[0][1]["Authorization"].startswith("Basic ")  # the credentials were still used

    receiver.answer = Answer(status=404, body=b"no such hook", content_type="text/plain")
    with pytest.raises(HandlerFailed) as caught:
        call({"url": url, "method": "PUT"})
    assert str(caught.value).endswith("answered 404: no such hook") and caught.value.category is ErrorCategory.LOGIC
    assert "hunter2" not in str(caught.value) and "s3cret" not in str(caught.value)


def test_a_large_or_non_json_answer_is_kept_as_a_bounded_text_excerpt(receiver: Receiver) -> None:
    big = json.dumps({"rows": ["x" * 100] * 100}).encode()
    receiver.answer = Answer(body=big)
    result = call({"url": receiver.url()})
    assert isinstance(result["body"], str) and result["body"].startswith('{"rows": ["xxx')
    assert len(result["body"]) == MAX_BODY_CHARS + 1 and result["body"].endswith("…")
    receiver.answer = Answer(body=b"<html>fine</html>", content_type="text/html")
    assert call({"url": receiver.url()}) == {"status": 200, "body": "<html>fine</html>"}
    assert call({"url": receiver.url(), "expectedStatus": [200, 201]})["status"] == 200


def test_the_default_policy_refuses_loopback_and_metadata_addresses_before_connecting(receiver: Receiver) -> None:
    for url in (receiver.url(), receiver.url(host="localhost"), "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(HandlerFailed) as caught:
            call({"url": url, "timeoutSeconds": 5}, egress=EgressPolicy())
        assert caught.value.category is ErrorCategory.POLICY
        assert str(caught.value).startswith("egress denied:") and "SCHEDULE_EGRESS_ALLOW" in str(caught.value)
    assert receiver.requests == []  # nothing reached the receiver
    denied = EgressPolicy.parse(allow=["127.0.0.0/8"], deny=["127.0.0.1/32"])
    with pytest.raises(HandlerFailed, match=r"denied network 127\.0\.0\.1/32") as caught:
        call({"url": receiver.url()}, egress=denied)
    assert caught.value.category is ErrorCategory.POLICY and receiver.requests == []


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    other = Receiver()
    try:
        receiver.answer = Answer(status=302, body=b"", content_type="text/plain", location=other.url("/internal"))
        with pytest.raises(HandlerFailed, match="answered 302") as caught:
            call({"url": receiver.url()})
        assert caught.value.category is ErrorCategory.LOGIC
        assert other.requests == []
        assert call({"url": receiver.url(), "expectedStatus": 302}) == {"status": 302, "body": ""}
    finally:
        other.close()


def test_a_slow_answer_times_out_and_a_closed_port_is_a_network_failure(receiver: Receiver) -> None:
    receiver.answer = Answer(delay_s=2.0)
    started = time.monotonic()
    with pytest.raises(HandlerFailed, match=r"timed out after 0\.3s") as caught:
        call({"url": receiver.url(), "timeoutSeconds": 0.3})
    assert caught.value.category is ErrorCategory.TIMEOUT and time.monotonic() - started < 1.5
    with pytest.raises(HandlerFailed, match=r"^POST http://127.0.0.1:9/x failed: ClientConnectorError") as caught:
        call({"url": "http://127.0.0.1:9/x?token=abc"})
    assert caught.value.category is ErrorCategory.NETWORK and "abc" not in str(caught.value)


def test_calls_on_one_loop_share_a_session_with_pooled_connections(receiver: Receiver) -> None:
    handler = HttpHandler(egress=LOOPBACK)
    metadata = {"url": receiver.url()}

    async def burst() -> list[Any]:
        first = await handler.run_async(context("a", metadata, at=AT))
        session = handler.sessions.get()
        rest = await asyncio.gather(*(handler.run_async(context("a", metadata, at=AT)) for _ in range(199)))
        assert handler.sessions.get() is session  # one session per loop
        await handler.close()
        assert session.closed
        return [first, *rest]

    results = asyncio.run(burst())
    assert len(results) == 200 and all(r["status"] == 200 for r in results)
    assert len(receiver.requests) == 200
    assert len(receiver.peers) < 200  # connections were reused


def test_safe_url_prints_scheme_host_port_and_path_only() -> None:
    assert safe_url("https://u:p@example.com:8443/a/b?key=1#frag") == "https://example.com:8443/a/b"
    assert safe_url("http://[::1]:80/x?y") == "http://[::1]:80/x"
    assert safe_url("http://host:notaport/") == "<malformed URL>"


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({}, "metadata.url"),
        ({"url": "ftp://x/y"}, "metadata.url"),
        ({"url": "http://h:99999999/"}, "metadata.url"),
        ({"url": "http://h/", "method": "TRACE"}, "metadata.method"),
        ({"url": "http://h/", "headers": {"a": 1}}, "metadata.headers"),
        ({"url": "http://h/", "timeoutSeconds": 0}, "metadata.timeoutSeconds"),
        ({"url": "http://h/", "expectedStatus": [99]}, "metadata.expectedStatus"),
    ],
)
def test_bad_metadata_names_the_key(metadata: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        HttpHandler().validate(metadata)
    assert caught.value.field == field


def test_the_registry_gives_the_settings_egress_policy_and_the_lanes_concurrency_as_the_pool() -> None:
    from schedule_grpc.app.handlers import handler_registry
    from schedule_grpc.settings import Settings, SettingsError

    handler = handler_registry(Settings(executor_remote_concurrency=64, egress_allow="10.1.0.0/16")).get("http")
    assert isinstance(handler, HttpHandler) and handler.sessions.limit == 64
    handler.egress.check("10.1.2.3", 443)  # allowed by the setting
    with pytest.raises(SettingsError, match="SCHEDULE_EGRESS_DENY"):
        Settings.from_env({"SCHEDULE_EGRESS_DENY": "10.0.0.0/8,not-a-network"})


def test_concurrent_calls_to_one_host_share_at_most_its_connection_cap(receiver: Receiver) -> None:
    """A burst to one receiver reuses a bounded set of keep-alive connections instead of opening one per call."""
    receiver.answer = Answer(delay_s=0.02)
    handler = HttpHandler(egress=LOOPBACK, connections=64, per_host=4)
    metadata = {"url": receiver.url()}
    handler.validate(metadata)

    async def burst() -> list[Any]:
        try:
            calls = (handler.run_async(context("burst", metadata, at=AT)) for _ in range(40))
            return await asyncio.gather(*calls)
        finally:
            await handler.close()

    results = asyncio.run(burst())
    assert [r["status"] for r in results] == [200] * 40 and len(receiver.requests) == 40
    assert 1 <= len(receiver.peers) <= 4
