"""The ``http`` handler: a webhook call configured by the task's metadata.

Metadata: ``url`` (required, http or https), ``method`` (default POST), ``headers``
(object of strings), ``body`` (any JSON, sent as JSON), ``timeoutSeconds`` (default
30, capped by the task's timeout), ``expectedStatus`` (a status or a list of them;
default any 2xx). Every request carries ``Idempotency-Key`` (task id and scheduled
instant), ``X-Schedule-Task``, ``X-Schedule-Scheduled-For`` and ``X-Schedule-Attempt``
so the receiver can deduplicate retries.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpcore  # noqa: F401 - see below
import httpx

from schedule_grpc.egress import EgressPolicy
from schedule_grpc.errors import InvalidArgument
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed
from schedule_grpc.models import JSON, ErrorCategory

# One TLS context per process, built at import: building one loads the CA bundle, ~50 ms of CPU that,
# once per call, capped a 2-core replica at ~16 webhook executions per second. The executor's fork
# server imports this module, so every worker process inherits the context ready.
_TLS: ssl.SSLContext = httpx.create_ssl_context()
# httpx imports its transport (httpcore, h11) on the first Client: ~55 ms per worker process, each
# execution having a fresh one. Imported here, the fork server holds it and every worker inherits it.

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")  # RFC 9110 token
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0
# The response body kept in the execution's result.
MAX_BODY_CHARS = 4096
# Statuses worth retrying as transient (the remote is overloaded or down).
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _expected(metadata: Mapping[str, JSON]) -> list[int] | None:
    value = metadata.get("expectedStatus")
    if value is None:
        return None
    statuses = value if isinstance(value, list) else [value]
    return [int(s) for s in statuses]


class HttpHandler:
    """Calls a URL; succeeds on the expected status."""

    name = "http"
    category = "integration"
    description = (
        "Calls a webhook. Metadata: url (required), method (default POST), headers, body (JSON), "
        "timeoutSeconds (default 30), expectedStatus (default any 2xx)."
    )

    def __init__(self, *, egress: EgressPolicy | None = None) -> None:
        self.egress = egress

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        url = metadata.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidArgument("metadata.url", "is required and must be a string URL")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgument("metadata.url", "must be an absolute http:// or https:// URL")
        method = metadata.get("method", "POST")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise InvalidArgument("metadata.method", f"must be one of {', '.join(METHODS)}")
        headers = metadata.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise InvalidArgument("metadata.headers", "must be an object of string values")
        for key, value in headers.items():
            if not HEADER_NAME.fullmatch(key):
                raise InvalidArgument("metadata.headers", "header names must be HTTP tokens (letters, digits, -)")
            if any(c in value for c in "\r\n\x00"):
                raise InvalidArgument(f"metadata.headers.{key}", "must not contain CR, LF or NUL")
        timeout = metadata.get("timeoutSeconds", DEFAULT_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT_S:
            raise InvalidArgument("metadata.timeoutSeconds", f"must be a number in (0, {MAX_TIMEOUT_S:g}]")
        expected = metadata.get("expectedStatus")
        if expected is not None:
            statuses = expected if isinstance(expected, list) else [expected]
            if not statuses or not all(
                isinstance(s, int | float) and not isinstance(s, bool) and s == int(s) and 100 <= s <= 599
                for s in statuses
            ):
                raise InvalidArgument("metadata.expectedStatus", "must be an HTTP status or a list of them")

    def run(self, context: HandlerContext) -> JSON:
        metadata = context.metadata
        timeout = min(float(metadata.get("timeoutSeconds", DEFAULT_TIMEOUT_S)), context.timeout.total_seconds())
        headers = {
            **metadata.get("headers", {}),
            "Idempotency-Key": context.idempotency_key,
            "X-Schedule-Task": context.task_name,
            "X-Schedule-Scheduled-For": context.scheduled_for.isoformat().replace("+00:00", "Z"),
            "X-Schedule-Attempt": str(context.attempt),
        }
        request: dict[str, Any] = {"headers": headers}
        if "body" in metadata:
            request["json"] = metadata["body"]
        method = str(metadata.get("method", "POST")).upper()
        try:
            with httpx.Client(timeout=timeout, follow_redirects=False, verify=_TLS) as client:
                response = client.request(method, str(metadata["url"]), **request)
        except httpx.TimeoutException as error:
            raise HandlerFailed(
                f"{method} {metadata['url']} timed out after {timeout:g}s", ErrorCategory.TIMEOUT
            ) from error
        except httpx.TransportError as error:
            raise HandlerFailed(f"{method} {metadata['url']} failed: {error}", ErrorCategory.NETWORK) from error

        expected = _expected(metadata)
        ok = response.status_code in expected if expected else response.is_success
        body = _body(response)
        if not ok:
            category = ErrorCategory.NETWORK if response.status_code in TRANSIENT_STATUSES else ErrorCategory.LOGIC
            raise HandlerFailed(
                f"{method} {metadata['url']} answered {response.status_code}: {str(body)[:200]}", category
            )
        return {"status": response.status_code, "body": body}


def _body(response: httpx.Response) -> JSON:
    if "json" in response.headers.get("content-type", ""):
        try:
            if len(response.content) <= MAX_BODY_CHARS:
                return response.json()
        except ValueError:
            pass
    return response.text[:MAX_BODY_CHARS]
