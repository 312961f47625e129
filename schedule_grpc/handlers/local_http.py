"""Synchronous HTTP clients for the local-lane handlers (imports, embeddings) that pass the egress policy.

The client resolves each host itself, judges every address it would connect to, and connects to
that very address (TLS still verifies the host name), so a DNS answer cannot slip a denied address
past the check; redirects are not followed and proxies from the environment are not used. A denied
connection fails the attempt with ``HandlerFailed(reason, ErrorCategory.POLICY)``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

import httpcore
import httpx

from schedule_grpc.domain.models import ErrorCategory
from schedule_grpc.handlers.base import HandlerFailed
from schedule_grpc.security.egress import EgressDenied, EgressPolicy


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        denied: EgressDenied | None = None
        last: Exception | None = None
        for *_, sockaddr in infos:
            address = str(sockaddr[0])
            try:
                self._policy.check(address, port)
            except EgressDenied as refused:
                denied = denied or refused
                continue
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:
                last = error
        if last is not None:
            raise last
        raise HandlerFailed(f"{host}: {denied}", ErrorCategory.POLICY)


def client(policy: EgressPolicy | None, *, timeout_s: float) -> httpx.Client:
    """An httpx client whose every connection passes ``policy`` (the default policy when None)."""
    transport = httpx.HTTPTransport()
    # httpx takes no network backend; its transport's pool is replaced by one built with ours.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=GuardedBackend(policy or EgressPolicy())
    )
    return httpx.Client(timeout=timeout_s, transport=transport, trust_env=False, follow_redirects=False)
