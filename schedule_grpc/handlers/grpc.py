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

This module and api/ are the only ones that import grpc: here it is the client of other services.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from collections.abc import Mapping
from typing import Any

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers import common
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed, Lane
from schedule_grpc.handlers.outbound import MAX_BODY_CHARS, quote
from schedule_grpc.security.egress import EgressDenied, EgressPolicy

METHOD_RE = re.compile(r"/?([A-Za-z_][\w.]*)/([A-Za-z_]\w*)")
GRPC_HEADER_NAME = re.compile(r"[0-9a-z_.-]{1,256}")  # gRPC metadata keys
TARGET_RE = re.compile(r"[\w.\-]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5}")
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
# Files a reflection walk may fetch: a service's descriptors and their imports, bounded.
_MAX_FILES = 200


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
            request_class, response_class = await _message_classes(channel, service_name, method_name, remaining)
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


async def _reflect(
    stub: reflection_pb2_grpc.ServerReflectionStub, request: reflection_pb2.ServerReflectionRequest, timeout: float
) -> list[descriptor_pb2.FileDescriptorProto] | None:
    """The files one reflection request answers; None when the server says it has no such thing."""
    try:
        async for reply in stub.ServerReflectionInfo(iter([request]), timeout=timeout):
            if reply.HasField("error_response"):
                return None
            return [
                descriptor_pb2.FileDescriptorProto.FromString(data)
                for data in reply.file_descriptor_response.file_descriptor_proto
            ]
    except grpc.RpcError as error:
        raise failure(error, "server reflection") from error
    return None


async def _message_classes(
    channel: grpc.aio.Channel, service_name: str, method_name: str, remaining: Any
) -> tuple[Any, Any]:
    """The request and response classes of a method, read from the server's reflection."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    first = await _reflect(
        stub, reflection_pb2.ServerReflectionRequest(file_containing_symbol=service_name), remaining()
    )
    if not first:
        raise HandlerFailed(f"the server does not offer {service_name} (by its reflection)", ErrorCategory.LOGIC)
    files = {f.name: f for f in first}
    missing = [d for f in first for d in f.dependency if d not in files]
    while missing and len(files) < _MAX_FILES:
        name = missing.pop()
        if name in files:
            continue
        found = await _reflect(stub, reflection_pb2.ServerReflectionRequest(file_by_filename=name), remaining())
        for file in found or [_well_known(name)]:
            files.setdefault(file.name, file)
            missing.extend(d for d in file.dependency if d not in files)
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added or name not in files:
            return
        added.add(name)
        for dependency in files[name].dependency:
            add(dependency)
        pool.Add(files[name])

    for name in files:
        add(name)
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError as error:
        raise HandlerFailed(
            f"the server does not offer {service_name} (by its reflection)", ErrorCategory.LOGIC
        ) from error
    method = service.methods_by_name.get(method_name)
    if method is None:
        raise HandlerFailed(f"{service_name} has no method {method_name}", ErrorCategory.LOGIC)
    if method.client_streaming or method.server_streaming:
        raise HandlerFailed(
            f"{service_name}/{method_name} is a streaming method; only unary calls are made", ErrorCategory.LOGIC
        )
    return message_factory.GetMessageClass(method.input_type), message_factory.GetMessageClass(method.output_type)


def _well_known(name: str) -> descriptor_pb2.FileDescriptorProto:
    """A file the server did not send, from the protobuf runtime's own (google/protobuf/*.proto)."""
    proto = descriptor_pb2.FileDescriptorProto()
    try:
        descriptor_pool.Default().FindFileByName(name).CopyToProto(proto)
    except KeyError:
        raise HandlerFailed(f"the server's reflection does not give {name}", ErrorCategory.LOGIC) from None
    return proto
