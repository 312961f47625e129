"""The ASGI application of the shim: match a route, build the request message, forward it over gRPC.

Every call goes through the gRPC server's interceptors (authentication, roles, limits, error mapping),
so HTTP and gRPC callers are treated alike. The ``authorization`` header travels as gRPC metadata.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import metadata as package_metadata
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor, ServiceDescriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from schedule_grpc.api import status
from schedule_grpc.api.http import marshal, routes
from schedule_grpc.api.http.routes import Route

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HttpError(Exception):
    """An answer the shim gives itself, before or instead of a gRPC call."""

    def __init__(self, http_status: int, code: str, reason: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.http_status, self.code, self.reason, self.message = http_status, code, reason, message
        self.headers = headers or {}


def _bad_request(reason: str, message: str) -> HttpError:
    return HttpError(status.http_status_for(grpc.StatusCode.INVALID_ARGUMENT), "INVALID_ARGUMENT", reason, message)


def service_info() -> dict[str, Any]:
    """GET /: the seed's service-info document."""
    try:
        version = package_metadata.version("schedule-grpc")
    except package_metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        version = "1.0.0"
    return {
        "service": "schedule",
        "version": version,
        "description": "Cron job and task scheduling service",
        "interfaces": {
            "rpc": "gRPC schedule.v1.ScheduleService for service-to-service calls",
            "http": "REST API for task management and monitoring",
            "cron": "crontab(5) schedules in IANA time zones, fired by the service itself",
        },
        "endpoints": {
            "tasks": {
                "list": "GET /api/tasks",
                "get": "GET /api/tasks/:name",
                "register": "POST /api/tasks",
                "enable": "POST /api/tasks/:name/enable",
                "disable": "POST /api/tasks/:name/disable",
                "delete": "DELETE /api/tasks/:name",
                "run": "POST /api/tasks/:name/run",
                "history": "GET /api/tasks/:name/history",
            },
            "handlers": "GET /api/handlers",
            "executions": "GET /api/executions",
            "health": "GET /api/health",
        },
    }


def _query_value(field: FieldDescriptor, raw: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        lowered = raw.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise _bad_request("BAD_QUERY_PARAMETER", f"{field.json_name}: expected true or false, got {raw!r}")
        return lowered in ("true", "1")
    return raw


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        child = data.setdefault(part, {})
        if not isinstance(child, dict):
            raise _bad_request("BAD_REQUEST_BODY", f"{dotted}: {part} must be an object")
        data = child
    data[last] = value


class RequestData:
    """What a request carries, in two parts that go wrong differently: the body, and the query with the path."""

    def __init__(self, body: dict[str, Any], query: dict[str, Any]) -> None:
        self.body, self.query = body, query


def request_data(route: Route, path_values: dict[str, str], query: str, body: bytes) -> RequestData:
    """The request as JSON objects: body (per the binding); query parameters, then path variables."""
    data: dict[str, Any] = {}
    if body.strip():
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError as error:
            where = f"line {error.lineno}, column {error.colno}"
            raise _bad_request("MALFORMED_JSON", f"the request body is not valid JSON ({where})") from None
        except (ValueError, RecursionError):
            raise _bad_request("MALFORMED_JSON", "the request body is not valid JSON or is nested too deeply") from None
        if route.body == "*":
            if not isinstance(parsed, dict):
                raise _bad_request("BAD_REQUEST_BODY", "the request body must be a JSON object")
            data = parsed
        elif route.body:
            data[route.body] = parsed
        elif parsed != {}:
            raise _bad_request("UNEXPECTED_BODY", f"{route.verb} {route.template} takes no request body")
    params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=False)
    if params and route.body == "*":
        raise _bad_request("BAD_QUERY_PARAMETER", f"{route.verb} {route.template} takes no query parameters")
    descriptor = route.method.input_type
    from_query: dict[str, Any] = {}
    for key, values in params.items():
        target: Any = descriptor
        field = None
        for part in key.split("."):
            field = marshal.field_named(target, part) if target is not None else None
            if field is None:
                raise _bad_request("BAD_QUERY_PARAMETER", f"unknown query parameter {key!r}")
            target = field.message_type
        assert field is not None
        if marshal.is_repeated(field):
            _set_path(from_query, key, [_query_value(field, v) for v in values])
        elif len(values) > 1:
            raise _bad_request("BAD_QUERY_PARAMETER", f"query parameter {key!r} given more than once")
        else:
            _set_path(from_query, key, _query_value(field, values[0]))
    for name, value in path_values.items():
        _set_path(from_query, name, value)
    return RequestData(data, from_query)


def fill(request: Any, data: RequestData) -> None:
    """Fills ``request`` from the body, then from the query and path; errors name the part that is wrong."""
    try:
        marshal.from_json(data.body, request)
    except marshal.BadJson as error:
        raise _bad_request("BAD_REQUEST_BODY", str(error)) from None
    from_query = type(request)()
    try:
        marshal.from_json(data.query, from_query)
    except marshal.BadJson as error:
        raise _bad_request("BAD_QUERY_PARAMETER", str(error)) from None
    request.MergeFrom(from_query)


def envelope(response: Any) -> dict[str, Any]:
    """``{"success": true, "count": n, ...fields}``: count is the length of the first repeated field.

    A response with its own ``success`` field (RunTaskNow) keeps it.
    """
    out: dict[str, Any] = {"success": True}
    repeated = [f for f in response.DESCRIPTOR.fields if marshal.is_repeated(f)]
    if repeated:
        out["count"] = len(getattr(response, repeated[0].name))
    out.update(marshal.to_json(response))
    return out


def _error_from_rpc(error: grpc.aio.AioRpcError) -> HttpError:
    code = error.code()
    reason, headers = code.name, {}
    trailing: Any = error.trailing_metadata() or ()
    for key, value in trailing:
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                headers["retry-after"] = str(max(1, math.ceil(retry.retry_delay.ToTimedelta().total_seconds())))
    return HttpError(status.http_status_for(code), code.name, reason, error.details() or code.name, headers)


class ShimApp:
    """ASGI app serving the annotated routes of ``service`` by calling the gRPC server at ``target``."""

    def __init__(self, service: ServiceDescriptor, target: str, *, max_body_bytes: int) -> None:
        self.routes = routes.routes_for(service)
        self._target = target
        self._max_body = max_body_bytes
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._channel = grpc.aio.insecure_channel(self._target)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._channel is not None:
                    await self._channel.close(grace=None)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            http_status, payload, extra = await self._answer(scope, receive, headers)
        except HttpError as error:
            http_status, extra = error.http_status, error.headers
            payload = {"success": False, "error": error.message, "code": error.code, "reason": error.reason}
        except Exception:
            log.exception("unhandled error in the HTTP shim", extra={"path": scope.get("path")})
            http_status, extra = 500, {}
            payload = {"success": False, "error": "internal error; it has been logged", "code": "INTERNAL"}
        body = json.dumps(payload, separators=(",", ":")).encode()
        response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        response_headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": http_status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise _bad_request("BODY_TOO_LARGE", f"the request body is over {self._max_body} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _bad_request("BODY_TOO_LARGE", f"the request body is over {self._max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _answer(
        self, scope: Scope, receive: Receive, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        verb = scope["method"].upper()
        raw = scope.get("raw_path")
        raw_path = raw.decode("latin-1") if raw else urllib.parse.quote(scope["path"])
        raw_path = raw_path.split("?", 1)[0]
        authorization = headers.get("authorization")
        if authorization is not None and not all(" " <= c <= "~" for c in authorization):
            raise _bad_request("BAD_HEADER", "authorization: must be printable ASCII (a Bearer token)")
        metadata: tuple[tuple[str, str], ...] = (("authorization", authorization),) if authorization is not None else ()
        client = scope.get("client")
        if client:  # the guard throttles failed authentications per client address
            metadata += (("x-schedule-client-address", str(client[0])),)
        if raw_path == "/" and verb == "GET":
            return 200, service_info(), {}
        if raw_path == "/api/health" and verb == "GET":
            return await self._health()
        try:
            route, values = routes.match(self.routes, verb, raw_path)
        except routes.WrongVerb as error:
            # No gRPC code fits a verb the route lacks (UNIMPLEMENTED would say the RPC does not exist).
            raise HttpError(
                405,
                "METHOD_NOT_ALLOWED",
                "METHOD_NOT_ALLOWED",
                f"{verb} is not allowed on {raw_path}",
                {"allow": ", ".join(error.allowed)},
            ) from None
        except routes.NoRoute:
            raise HttpError(404, "NOT_FOUND", "ROUTE_NOT_FOUND", f"no route for {verb} {raw_path}") from None
        body = await self._read_body(receive, headers)
        request = message_factory.GetMessageClass(route.method.input_type)()
        fill(request, request_data(route, values, scope.get("query_string", b"").decode("latin-1"), body))
        try:
            response = await self._call(route)(request, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            raise _error_from_rpc(error) from None
        return 200, envelope(response), {}

    def _call(self, route: Route) -> Any:
        call = self._calls.get(route.full_method)
        if call is None:
            assert self._channel is not None, "lifespan startup opens the channel"
            response_class = message_factory.GetMessageClass(route.method.output_type)
            call = self._channel.unary_unary(
                route.full_method,
                request_serializer=lambda message: message.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
            self._calls[route.full_method] = call
        return call

    async def _health(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        assert self._channel is not None
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            serving = reply.status == health_pb2.HealthCheckResponse.SERVING
            state = marshal.enum_short_name(health_pb2.HealthCheckResponse.ServingStatus.DESCRIPTOR, reply.status)
        except grpc.aio.AioRpcError:
            serving, state = False, "not_serving"
        if serving:
            return 200, {"success": True, "service": "schedule", "status": state}, {}
        unavailable = status.http_status_for(grpc.StatusCode.UNAVAILABLE)
        return unavailable, {"success": False, "service": "schedule", "status": state, "error": "not serving"}, {}


def schedule_app(target: str, *, max_body_bytes: int) -> ShimApp:
    """The shim of schedule.v1.ScheduleService, forwarding to the gRPC server at ``target``."""
    from schedule.v1 import schedule_service_pb2 as pb

    return ShimApp(pb.DESCRIPTOR.services_by_name["ScheduleService"], target, max_body_bytes=max_body_bytes)
