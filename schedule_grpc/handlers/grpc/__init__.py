"""The ``grpc`` handler (a unary call to another service's method) and the gRPC health probe, on grpc.aio.

The callee needs no code of ours: the request is JSON in the task's metadata and is encoded through
the callee's server reflection. Metadata: ``target`` (host:port, required), ``method``
(``package.Service/Method``, required), ``request`` (JSON object, default {}), ``timeoutSeconds``
(deadline, default 30, capped by the task's timeout), ``tls`` (default false), ``caCertificate`` (PEM;
default the system roots), ``serverName`` (TLS name override), ``bearerToken`` (call credential; needs
tls), ``headers`` (extra call metadata). Every call carries ``idempotency-key`` (task id + scheduled
instant), ``x-schedule-task``, ``x-schedule-scheduled-for`` and ``x-schedule-attempt`` as metadata.

The handler runs on the executor's remote lane: an asyncio task on its event loop, no thread of its
own. The target's name is resolved first, each address is judged by the egress policy, and the
channel is opened to the first allowed address (the name stays the call's authority and TLS name),
so neither DNS nor a proxy setting can lead the call elsewhere.

This package and api/ are the only ones that import grpc: here it is the client of other services
(``channel``: the egress-checked channel, failures, the health probe; ``schema``: a method's message
classes from the callee's reflection).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any

import grpc
import grpc.aio
from google.protobuf import json_format

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers import common
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed, Lane
from schedule_grpc.handlers.grpc.channel import failure, open_channel
from schedule_grpc.handlers.grpc.channel import probe_health as probe_health
from schedule_grpc.handlers.grpc.schema import message_classes
from schedule_grpc.handlers.outbound import MAX_BODY_CHARS
from schedule_grpc.security.egress import EgressPolicy

METHOD_RE = re.compile(r"/?([A-Za-z_][\w.]*)/([A-Za-z_]\w*)")
GRPC_HEADER_NAME = re.compile(r"[0-9a-z_.-]{1,256}")  # gRPC metadata keys
TARGET_RE = re.compile(r"[\w.\-]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5}")
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0


class GrpcHandler:
    """Calls a unary method of another service, described by its server reflection."""

    name = "grpc"
    category = "integration"
    lane: Lane = "remote"
    description = (
        "Calls a unary gRPC method of another service through its server reflection. Metadata: target "
        "(host:port), method (package.Service/Method), request (JSON), timeoutSeconds (default 30), tls, "
        "caCertificate (PEM), serverName, bearerToken (needs tls), headers."
    )

    def __init__(self, *, egress: EgressPolicy | None = None) -> None:
        self.egress = egress if egress is not None else EgressPolicy()

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        target = metadata.get("target")
        if not isinstance(target, str) or not TARGET_RE.fullmatch(target):
            raise InvalidArgument("metadata.target", "is required: host:port of the service")
        method = metadata.get("method")
        if not isinstance(method, str) or not METHOD_RE.fullmatch(method):
            raise InvalidArgument("metadata.method", "is required: package.Service/Method")
        if not isinstance(metadata.get("request", {}), dict):
            raise InvalidArgument("metadata.request", "must be a JSON object (the request message)")
        common.number(metadata, "timeoutSeconds", DEFAULT_TIMEOUT_S, minimum=0, maximum=MAX_TIMEOUT_S)
        tls = metadata.get("tls", False)
        if not isinstance(tls, bool):
            raise InvalidArgument("metadata.tls", "must be true or false")
        for key in ("caCertificate", "serverName", "bearerToken"):
            if key in metadata and not (isinstance(metadata[key], str) and metadata[key]):
                raise InvalidArgument(f"metadata.{key}", "must be a non-empty string")
        if "caCertificate" in metadata and "BEGIN CERTIFICATE" not in str(metadata["caCertificate"]):
            raise InvalidArgument("metadata.caCertificate", "must be a PEM certificate")
        if not tls and any(k in metadata for k in ("caCertificate", "serverName", "bearerToken")):
            raise InvalidArgument("metadata.tls", "must be true with caCertificate, serverName or bearerToken")
        headers = metadata.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and k == k.lower() and not k.startswith("grpc-") and isinstance(v, str)
            for k, v in headers.items()
        ):
            raise InvalidArgument("metadata.headers", "must be an object of lower-case names to string values")
        for key, value in headers.items():
            if not GRPC_HEADER_NAME.fullmatch(key) or key.endswith("-bin"):
                raise InvalidArgument("metadata.headers", "names must be lower-case letters, digits, - _ . only")
            if not all(" " <= c <= "~" for c in value):
                raise InvalidArgument(f"metadata.headers.{key}", "must be printable ASCII (no CR, LF or NUL)")

    def run(self, context: HandlerContext) -> JSON:
        """The call from synchronous code (outside the executor), on a loop of its own."""
        return asyncio.run(self.run_async(context))

    async def close(self) -> None:
        """Nothing is kept between calls (each opens and closes its channel)."""

    async def run_async(self, context: HandlerContext) -> JSON:
        metadata = context.metadata
        match = METHOD_RE.fullmatch(str(metadata["method"]))
        assert match is not None  # validated at registration
        service_name, method_name = match.groups()
        target = str(metadata["target"])
        timeout = min(float(metadata.get("timeoutSeconds", DEFAULT_TIMEOUT_S)), context.timeout.total_seconds())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def remaining() -> float:
            return max(0.001, deadline - loop.time())

        tls = bool(metadata.get("tls", False))
        call_metadata: tuple[tuple[str, str], ...] = (
            *((str(k), str(v)) for k, v in metadata.get("headers", {}).items()),
            ("idempotency-key", context.idempotency_key),
            ("x-schedule-task", context.task_name),
            ("x-schedule-scheduled-for", context.scheduled_for.isoformat().replace("+00:00", "Z")),
            ("x-schedule-attempt", str(context.attempt)),
        )
        credentials = (
            grpc.access_token_call_credentials(str(metadata["bearerToken"])) if "bearerToken" in metadata else None
        )
        ca_pem = metadata.get("caCertificate")
        server_name = metadata.get("serverName")
        channel = await open_channel(
            target,
            self.egress,
            tls=tls,
            ca_pem=str(ca_pem) if ca_pem else None,
            server_name=str(server_name) if server_name else None,
        )
        try:
            try:
                await asyncio.wait_for(channel.channel_ready(), remaining())
            except TimeoutError as error:
                raise HandlerFailed(f"{target} not reachable within {timeout:g}s", ErrorCategory.NETWORK) from error
            request_class, response_class = await message_classes(channel, service_name, method_name, remaining)
            try:
                request = json_format.ParseDict(metadata.get("request", {}), request_class())
            except json_format.ParseError as error:
                raise HandlerFailed(
                    f"metadata.request does not fit {request_class.DESCRIPTOR.full_name}: {error}", ErrorCategory.LOGIC
                ) from error
            call = channel.unary_unary(
                f"/{service_name}/{method_name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
            try:
                response = await call(request, timeout=remaining(), metadata=call_metadata, credentials=credentials)
            except grpc.RpcError as error:
                raise failure(error, f"{service_name}/{method_name} on {target}") from error
        finally:
            await channel.close(None)
        return {"method": f"{service_name}/{method_name}", "response": _bounded(json_format.MessageToDict(response))}


def _bounded(answer: dict[str, Any]) -> JSON:
    """A small answer as JSON; a large one as a bounded excerpt of its JSON text."""
    text = json.dumps(answer, ensure_ascii=False)
    if len(text) <= MAX_BODY_CHARS:
        return answer
    return text[:MAX_BODY_CHARS] + "…"
