"""The interceptor in front of every method: authenticate, authorise, rate-limit, then run as the caller.

It sits in front of the HTTP shim too, because the shim forwards to this gRPC server.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from schedule_grpc.api import auth
from schedule_grpc.api.limits import RateLimiter
from schedule_grpc.api.status import ServerInterceptor, to_status
from schedule_grpc.domain import caller as callers
from schedule_grpc.domain.caller import Caller, Role
from schedule_grpc.domain.errors import PermissionDenied, ResourceExhausted, ScheduleError, Unauthenticated, excerpt

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

# The HTTP shim calls from loopback and names the client it serves in this metadata key.
CLIENT_ADDRESS_KEY = "x-schedule-client-address"


def peer_address(peer: str, metadata: dict[str, str]) -> str:
    """The address a call comes from, without the port: ``ipv4:10.0.0.7:51234`` -> ``10.0.0.7``.

    From loopback (the HTTP shim) the client address the shim names is used, so HTTP clients are told
    apart; nobody else can claim one.
    """
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        host = rest.rpartition(":")[0].strip("[]")
    elif kind == "ipv4":
        host = rest.rpartition(":")[0]
    else:
        host = peer
    loopback = host in ("127.0.0.1", "::1") or host.startswith("127.") or kind == "unix"
    forwarded = metadata.get(CLIENT_ADDRESS_KEY)
    if loopback and forwarded:
        return excerpt(forwarded, 64)
    return excerpt(host, 64)


class CallGuard(ServerInterceptor):
    """Refuses a call with UNAUTHENTICATED, PERMISSION_DENIED or RESOURCE_EXHAUSTED (with a retry hint)."""

    def __init__(self, security: auth.Security, limiter: RateLimiter, failures: RateLimiter | None = None) -> None:
        self._security = security
        self._limiter = limiter
        self._failures = failures  # failed authentications per peer address, kind "auth"

    def admit(self, method: str, context: grpc.ServicerContext) -> Caller | None:
        """The caller the call runs as; raises the domain error that refuses it."""
        needed = auth.required_role(method)
        if needed is None:
            return None
        metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
        caller = self._authenticate(metadata, context)
        if caller is None:
            return None
        if needed is Role.ADMIN and not caller.is_admin:
            raise PermissionDenied(f"{auth.split_method(method)[1]} needs the admin role", reason="ADMIN_ONLY")
        kind = "expensive" if auth.is_expensive(method) else "default"
        wait_s = self._limiter.take(caller.name, kind)
        if wait_s > 0:
            raise ResourceExhausted(
                f"rate limit for {caller.name} exceeded; retry in {math.ceil(wait_s * 1000)} ms",
                retry_after_s=wait_s,
            )
        return caller

    def _authenticate(self, metadata: dict[str, str], context: grpc.ServicerContext) -> Caller | None:
        """The caller; a peer whose credentials failed too often is refused before they are even looked at."""
        if self._failures is None or self._security.open:
            return self._security.authenticate(metadata, context.auth_context())
        peer = peer_address(context.peer(), metadata)
        wait_s = self._failures.peek(peer, "auth")
        if wait_s > 0:
            raise ResourceExhausted(
                f"too many failed authentications from {peer}; retry in {math.ceil(wait_s * 1000)} ms",
                retry_after_s=wait_s,
            )
        try:
            return self._security.authenticate(metadata, context.auth_context())
        except Unauthenticated:
            self._failures.take(peer, "auth")
            raise

    def _admit_or_abort(self, method: str, context: grpc.ServicerContext) -> Caller | None:
        try:
            return self.admit(method, context)
        except ScheduleError as error:
            context.abort_with_status(to_status(error))
            raise  # abort raises; this line satisfies the type checker

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                with callers.acting_as(self._admit_or_abort(method, context)):
                    return unary(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
        if handler.unary_stream is not None:
            server_stream = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with callers.acting_as(self._admit_or_abort(method, context)):
                    yield from server_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
        if handler.stream_unary is not None:
            client_stream = handler.stream_unary

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                with callers.acting_as(self._admit_or_abort(method, context)):
                    return client_stream(requests, context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
        assert handler.stream_stream is not None
        bidi = handler.stream_stream

        def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            with callers.acting_as(self._admit_or_abort(method, context)):
                yield from bidi(requests, context)

        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)
