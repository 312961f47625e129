"""Outbound HTTP of the remote handlers: one aiohttp session per event loop, every connection egress-checked.

The session is created lazily on the loop that first needs it (the executor's remote lane, or the
short-lived loop of a synchronous ``run``), pools its connections up to a limit and shares the
process's one TLS context. Every socket it opens passes the egress policy on the resolved address
(``socket_factory`` sees the address each connection is made to, whether the URL named a host or an
IP); redirects are not followed, so no answer can send a request somewhere the policy has not judged.

What a call returns and says is bounded and printable: ``excerpt`` keeps a small JSON answer as JSON and
a bounded text excerpt otherwise; ``safe_url`` prints scheme://host[:port]/path, never user-info or the
query string, which may carry credentials.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import weakref
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from schedule_grpc.domain.models import JSON
from schedule_grpc.handlers.base import HandlerContext
from schedule_grpc.security.egress import EgressDenied, EgressPolicy

# One TLS context per process: building one loads the CA bundle (~50 ms of CPU).
TLS: ssl.SSLContext = ssl.create_default_context()
# Connections one session keeps to all hosts together; the remote lane's concurrency bounds the calls.
CONNECTION_LIMIT = 512
# Connections one session opens to one host (scheme, host, port); calls beyond wait for one of them to be
# free, within their timeout. A burst of 1,000 webhooks to one receiver opened 1,000 connections at once,
# and every call then advanced in lockstep: the first answer came when the last request was sent (+0.63 s
# after the instant); with 100 per host, the first came at +0.35 s. 256, not the 100 a bare client needs
# for a receiver that answers at once: 200 webhooks to one that takes 2 s must all reach it at their instant.
CONNECTIONS_PER_HOST = 256
# The answer kept in an execution's result, and the part of it quoted in an error.
MAX_BODY_CHARS = 4096
MAX_ERROR_EXCERPT = 200


class EgressRefused(EgressDenied, OSError):
    """A connection the policy refused, raised where aiohttp expects socket errors."""


def safe_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``: no user-info, no query, no fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"


def checked_socket_factory(policy: EgressPolicy) -> Any:
    """A TCPConnector ``socket_factory`` that refuses, before connecting, any address the policy denies."""

    def factory(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        try:
            policy.check(str(sockaddr[0]), int(sockaddr[1]))
        except EgressDenied as denied:
            raise EgressRefused(str(denied)) from None
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def denial_in(error: BaseException) -> EgressDenied | None:
    """The egress refusal behind a client error (aiohttp wraps the socket error), or None."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, EgressDenied):
            return current
        if isinstance(current, OSError) and "egress denied" in str(current):
            text = str(current)
            return EgressDenied(text[text.index("egress denied") :].split(", [Errno", 1)[0].rstrip("')]"))
        stack.extend([current.__cause__, current.__context__, getattr(current, "os_error", None)])
    return None


class Sessions:
    """aiohttp sessions by event loop, created on first use; picklable (a worker process builds its own)."""

    def __init__(
        self, egress: EgressPolicy, *, limit: int = CONNECTION_LIMIT, per_host: int = CONNECTIONS_PER_HOST
    ) -> None:
        self.egress = egress
        self.limit = limit
        self.per_host = min(per_host, limit)
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"egress": self.egress, "limit": self.limit, "per_host": self.per_host}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["egress"], limit=state["limit"], per_host=state["per_host"])  # type: ignore[misc]

    def get(self) -> aiohttp.ClientSession:
        """The running loop's session."""
        loop = asyncio.get_running_loop()
        session = self._by_loop.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.limit,
                limit_per_host=self.per_host,
                ssl=TLS,
                ttl_dns_cache=10,
                socket_factory=checked_socket_factory(self.egress),
            )
            session = aiohttp.ClientSession(connector=connector, auto_decompress=True, trust_env=False)
            self._by_loop[loop] = session
        return session

    async def close(self) -> None:
        """Closes the running loop's session (its pooled connections)."""
        session = self._by_loop.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()


class OnSessions:
    """What the remote handlers on aiohttp sessions share: ``run`` for synchronous callers, ``close`` for
    the remote lane's shutdown, and ``egress``, the policy their sessions judge every socket by."""

    sessions: Sessions

    async def run_async(self, context: HandlerContext) -> JSON:
        raise NotImplementedError

    def run(self, context: HandlerContext) -> JSON:
        """The call from synchronous code (outside the executor): a loop of its own, closed after."""

        async def once() -> JSON:
            try:
                return await self.run_async(context)
            finally:
                await self.close()

        return asyncio.run(once())

    async def close(self) -> None:
        """Closes this loop's session (the remote lane calls it at shutdown)."""
        await self.sessions.close()

    @property
    def egress(self) -> EgressPolicy:
        """The policy every connection passes."""
        return self.sessions.egress

    @egress.setter
    def egress(self, policy: EgressPolicy) -> None:
        self.sessions.egress = policy  # before the first call: a loop's session is built with it


async def read_bounded(response: aiohttp.ClientResponse, limit: int = MAX_BODY_CHARS) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the answer, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await response.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)
    return data[:limit], len(data) > limit


def excerpt(data: bytes, truncated: bool, content_type: str) -> JSON:
    """A small JSON answer as parsed JSON; otherwise its text, bounded (with a marker when cut)."""
    if not truncated and "json" in content_type.lower():
        try:
            value: JSON = json.loads(data)
            return value
        except ValueError:
            pass
    text = data.decode("utf-8", errors="replace")
    return text + ("…" if truncated else "")


def quote(body: JSON) -> str:
    """An answer as it is quoted in an error message: JSON, bounded."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= MAX_ERROR_EXCERPT else text[:MAX_ERROR_EXCERPT] + "…"
