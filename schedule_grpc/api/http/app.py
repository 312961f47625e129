"""The ASGI application of the shim: match a route, build the request message, forward it over gRPC.

Every call goes through the gRPC server's interceptors (authentication, roles, limits, error mapping),
so HTTP and gRPC callers are treated alike. The ``authorization`` header travels as gRPC metadata.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import metadata as package_metadata
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from schedule_grpc.api import status
from schedule_grpc.api.http import marshal, routes
from schedule_grpc.api.http.messages import HttpError, bad_request, envelope, error_from_rpc, fill, request_data
from schedule_grpc.api.http.routes import Route

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


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
            raise bad_request("BODY_TOO_LARGE", f"the request body is over {self._max_body} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise bad_request("BODY_TOO_LARGE", f"the request body is over {self._max_body} bytes")
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
            raise bad_request("BAD_HEADER", "authorization: must be printable ASCII (a Bearer token)")
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
            raise error_from_rpc(error) from None
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
