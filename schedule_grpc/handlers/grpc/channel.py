"""The grpc handler's channel to another service: resolved and checked by the egress policy first; a failed
call as a categorised handler failure; the gRPC health probe."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from schedule_grpc.domain.models import ErrorCategory
from schedule_grpc.handlers.base import HandlerFailed
from schedule_grpc.handlers.outbound import quote
from schedule_grpc.security.egress import EgressDenied, EgressPolicy

_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}


def split_target(target: str) -> tuple[str, int]:
    """(host, port) of ``host:port`` or ``[v6]:port``."""
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


async def resolve_allowed(target: str, egress: EgressPolicy) -> str:
    """The address to dial for ``target``: its first resolved address the policy allows.

    Raises HandlerFailed (POLICY) when every address is denied, (NETWORK) when the name does not resolve.
    """
    host, port = split_target(target)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise HandlerFailed(f"{host} does not resolve: {error}", ErrorCategory.NETWORK) from error
    denied: EgressDenied | None = None
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        try:
            egress.check(address, port)
        except EgressDenied as refusal:
            denied = denied or refusal
            continue
        return (
            f"[{address}]:{port}" if ipaddress.ip_address(address.split("%")[0]).version == 6 else f"{address}:{port}"
        )
    raise HandlerFailed(str(denied or f"egress denied: {host} resolved to no address"), ErrorCategory.POLICY)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def open_channel(
    target: str,
    egress: EgressPolicy,
    *,
    tls: bool,
    ca_pem: str | None = None,
    server_name: str | None = None,
) -> grpc.aio.Channel:
    """A grpc.aio channel to the egress-checked address of ``target``, plaintext or TLS."""
    address = await resolve_allowed(target, egress)
    host, _ = split_target(target)
    options: list[tuple[str, Any]] = [
        ("grpc.enable_http_proxy", 0),  # dial the address judged, not a proxy from the environment
        ("grpc.enable_retries", 0),
        ("grpc.default_authority", server_name or (target if not _is_ip(host) else address)),
    ]
    if not tls:
        return grpc.aio.insecure_channel(address, options=options)
    name = server_name or host
    options.append(("grpc.ssl_target_name_override", name))
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem.encode() if ca_pem else None)
    return grpc.aio.secure_channel(address, credentials, options=options)


def failure(error: grpc.RpcError, what: str) -> HandlerFailed:
    """A failed call as a categorised handler failure."""
    code = error.code()
    details = error.details()
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        category = ErrorCategory.TIMEOUT
    elif code in _TRANSIENT:
        category = ErrorCategory.NETWORK
    else:
        category = ErrorCategory.LOGIC
    return HandlerFailed(f"{what} failed: {code.name}: {quote(details or '')}", category)


async def probe_health(target: str, service: str, *, tls: bool, timeout_s: float, egress: EgressPolicy) -> str:
    """Asks ``grpc.health.v1.Health/Check``; returns the serving status name (``SERVING``: up), or
    ``CODE: details`` when the call fails, so callers need not know gRPC's error type.

    Raises HandlerFailed when the policy refuses the target.
    """
    channel = await open_channel(target, egress, tls=tls)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
        )
    except grpc.RpcError as error:
        return f"{error.code().name}: {error.details()}"
    finally:
        await channel.close(None)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
