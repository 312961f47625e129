"""The ``http`` handler: a webhook call configured by the task's metadata, run on the remote lane.

Metadata: ``url`` (required, http or https), ``method`` (default POST), ``headers``
(object of strings), ``body`` (any JSON, sent as JSON), ``timeoutSeconds`` (default
30, capped by the task's timeout), ``expectedStatus`` (a status or a list of them;
default any 2xx). Every request carries ``Idempotency-Key`` (task id and scheduled
instant), ``X-Schedule-Task``, ``X-Schedule-Scheduled-For`` and ``X-Schedule-Attempt``
so the receiver can deduplicate retries.

The call is an aiohttp request on the executor's event loop (one session per loop, pooled
connections); every connection passes the egress policy on its resolved address and redirects are
not followed. The result is ``{"status": ..., "body": ...}`` with a bounded excerpt of the answer;
errors quote the answer as JSON and name the URL without user-info or query.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed, Lane
from schedule_grpc.handlers.outbound import (
    CONNECTION_LIMIT,
    CONNECTIONS_PER_HOST,
    MAX_BODY_CHARS,
    OnSessions,
    Sessions,
    denial_in,
    excerpt,
    quote,
    read_bounded,
    safe_url,
)
from schedule_grpc.security.egress import EgressPolicy

__all__ = ["MAX_BODY_CHARS", "HttpHandler"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")  # RFC 9110 token
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0
# Statuses worth retrying as transient (the remote is overloaded or down).
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_USERINFO = re.compile(r"//[^/@\s'\"]+@")
_QUERY = re.compile(r"\?[^\s'\"]*")


def _expected(metadata: Mapping[str, JSON]) -> list[int] | None:
    value = metadata.get("expectedStatus")
    if value is None:
        return None
    statuses = value if isinstance(value, list) else [value]
    return [int(s) for s in statuses]


class HttpHandler(OnSessions):
    """Calls a URL; succeeds on the expected status."""

    name = "http"
    category = "integration"
    lane: Lane = "remote"
    description = (
        "Calls a webhook. Metadata: url (required), method (default POST), headers, body (JSON), "
        "timeoutSeconds (default 30), expectedStatus (default any 2xx)."
    )

    def __init__(
        self,
        *,
        egress: EgressPolicy | None = None,
        connections: int = CONNECTION_LIMIT,
        per_host: int = CONNECTIONS_PER_HOST,
    ) -> None:
        """``connections``: the session's pool (the registry gives the remote lane's concurrency); ``per_host``:
        the most of them open to one host at once."""
        self.sessions = Sessions(egress if egress is not None else EgressPolicy(), limit=connections, per_host=per_host)

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        url = metadata.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidArgument("metadata.url", "is required and must be a string URL")
        try:
            parts = urlsplit(url)
            hostname, _ = parts.hostname, parts.port
        except ValueError:
            raise InvalidArgument("metadata.url", "must be an absolute http:// or https:// URL") from None
        if parts.scheme not in ("http", "https") or not hostname:
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

    async def run_async(self, context: HandlerContext) -> JSON:
        metadata = context.metadata
        timeout = min(float(metadata.get("timeoutSeconds", DEFAULT_TIMEOUT_S)), context.timeout.total_seconds())
        scheduled_for = context.scheduled_for.isoformat().replace("+00:00", "Z")
        headers: dict[str, str] = {
            **metadata.get("headers", {}),
            "Idempotency-Key": f"{context.task_id}:{scheduled_for}",  # HandlerContext.idempotency_key
            "X-Schedule-Task": context.task_name,
            "X-Schedule-Scheduled-For": scheduled_for,
            "X-Schedule-Attempt": str(context.attempt),
        }
        request: dict[str, Any] = {"headers": headers}
        if "body" in metadata:
            request["json"] = metadata["body"]
        method = str(metadata.get("method", "POST")).upper()
        url = str(metadata["url"])
        session = self.sessions.get()
        try:
            async with session.request(
                method, url, allow_redirects=False, timeout=_client_timeout(timeout), **request
            ) as response:
                data, truncated = await read_bounded(response)
                status = response.status
                content_type = response.headers.get("Content-Type", "")
        except TimeoutError as error:
            raise HandlerFailed(f"{_shown(method, url)} timed out after {timeout:g}s", ErrorCategory.TIMEOUT) from error
        except (aiohttp.ClientError, OSError, ValueError) as error:
            denied = denial_in(error)
            if denied is not None:
                raise HandlerFailed(str(denied), ErrorCategory.POLICY) from None
            raise HandlerFailed(
                f"{_shown(method, url)} failed: {_describe(error, url)}", ErrorCategory.NETWORK
            ) from error

        body = excerpt(data, truncated, content_type)
        expected = _expected(metadata)
        ok = status in expected if expected else 200 <= status < 300
        if not ok:
            category = ErrorCategory.NETWORK if status in TRANSIENT_STATUSES else ErrorCategory.LOGIC
            raise HandlerFailed(f"{_shown(method, url)} answered {status}: {quote(body)}", category)
        return {"status": status, "body": body}


def _shown(method: str, url: str) -> str:
    """The call as an error names it (built only when one does)."""
    return f"{method} {safe_url(url)}"


@functools.lru_cache(maxsize=64)
def _client_timeout(total_s: float) -> aiohttp.ClientTimeout:
    """The request's timeout (immutable: tasks with the same one share it)."""
    return aiohttp.ClientTimeout(total=total_s)


def _describe(error: BaseException, url: str) -> str:
    """A client error in a few words, with the URL (as the error may print it) reduced to its safe form."""
    text = str(error) or type(error).__name__
    text = text.replace(url, safe_url(url))
    text = _USERINFO.sub("//", _QUERY.sub("", text))  # however else the client printed a URL
    return f"{type(error).__name__}: {text}"[:300]
