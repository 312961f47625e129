"""The ``grpc`` handler (a unary call to another service's method) and the gRPC health probe.

The callee needs no code of ours: the request is JSON in the task's metadata and is encoded through
the callee's server reflection. Metadata: ``target`` (host:port, required), ``method``
(``package.Service/Method``, required), ``request`` (JSON object, default {}), ``timeoutSeconds``
(deadline, default 30, capped by the task's timeout), ``tls`` (default false), ``caCertificate`` (PEM;
default the system roots), ``serverName`` (TLS name override), ``bearerToken`` (call credential; needs
tls), ``headers`` (extra call metadata). Every call carries ``idempotency-key`` (task id + scheduled
instant), ``x-schedule-task``, ``x-schedule-scheduled-for`` and ``x-schedule-attempt`` as metadata.

This module and api/ are the only ones that import grpc: here it is the client of other services.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from schedule_grpc.egress import EgressPolicy
from schedule_grpc.errors import InvalidArgument
from schedule_grpc.handlers import common
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed
from schedule_grpc.models import JSON, ErrorCategory

METHOD_RE = re.compile(r"/?([A-Za-z_][\w.]*)/([A-Za-z_]\w*)")
GRPC_HEADER_NAME = re.compile(r"[0-9a-z_.-]{1,256}")  # gRPC metadata keys
TARGET_RE = re.compile(r"[\w.\-]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5}")
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}


def channel_for(target: str, *, tls: bool, ca_pem: str | None = None, server_name: str | None = None) -> grpc.Channel:
    """A channel to ``target``, plaintext or TLS."""
    if not tls:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem.encode() if ca_pem else None)
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, credentials, options=options)


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
    return HandlerFailed(f"{what} failed: {code.name}: {details}", category)


def probe_health(target: str, service: str, *, tls: bool, timeout_s: float) -> str:
    """Asks ``grpc.health.v1.Health/Check``; returns the serving status name, raises grpc.RpcError."""
    with channel_for(target, tls=tls) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


class GrpcHandler:
    """Calls a unary method of another service, described by its server reflection."""

    name = "grpc"
    category = "integration"
    description = (
        "Calls a unary gRPC method of another service through its server reflection. Metadata: target "
        "(host:port), method (package.Service/Method), request (JSON), timeoutSeconds (default 30), tls, "
        "caCertificate (PEM), serverName, bearerToken (needs tls), headers."
    )

    def __init__(self, *, egress: EgressPolicy | None = None) -> None:
        self.egress = egress

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
        metadata = context.metadata
        match = METHOD_RE.fullmatch(str(metadata["method"]))
        assert match is not None  # validated at registration
        service_name, method_name = match.groups()
        target = str(metadata["target"])
        timeout = min(float(metadata.get("timeoutSeconds", DEFAULT_TIMEOUT_S)), context.timeout.total_seconds())
        tls = bool(metadata.get("tls", False))
        call_metadata: tuple[tuple[str, str | bytes], ...] = (
            *((k, v) for k, v in metadata.get("headers", {}).items()),
            ("idempotency-key", context.idempotency_key),
            ("x-schedule-task", context.task_name),
            ("x-schedule-scheduled-for", context.scheduled_for.isoformat().replace("+00:00", "Z")),
            ("x-schedule-attempt", str(context.attempt)),
        )
        credentials = (
            grpc.access_token_call_credentials(str(metadata["bearerToken"])) if "bearerToken" in metadata else None
        )
        with channel_for(
            target, tls=tls, ca_pem=metadata.get("caCertificate"), server_name=metadata.get("serverName")
        ) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=timeout)
            except grpc.FutureTimeoutError as error:
                raise HandlerFailed(f"{target} not reachable within {timeout:g}s", ErrorCategory.NETWORK) from error
            request_class, response_class = _message_classes(channel, service_name, method_name)
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
                response = call(request, timeout=timeout, metadata=call_metadata, credentials=credentials)
            except grpc.RpcError as error:
                raise failure(error, f"{service_name}/{method_name} on {target}") from error
        return {"method": f"{service_name}/{method_name}", "response": json_format.MessageToDict(response)}


def _message_classes(channel: grpc.Channel, service_name: str, method_name: str) -> tuple[Any, Any]:
    """The request and response classes of a method, read from the server's reflection."""
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    try:
        service = pool.FindServiceByName(service_name)
    except grpc.RpcError as error:
        raise failure(error, "server reflection") from error
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
