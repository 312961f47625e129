"""Server capacity that no caller can starve: probes, short calls and long waits each have their own threads.

The synchronous gRPC server runs every call on one thread pool by default. A call that waits (RunTaskNow
until its execution ends, WatchExecutions for as long as the caller reads) holds its thread, so a few such
calls used to take every thread and the health Check, then every other caller, timed out. Here:

- health (``Check``, ``List``, ``Watch``) runs on a small pool of its own; ``Watch`` holds no thread at all
  (it sends from the status change), so no number of watchers can take that pool; reflection (a stream a
  client may keep open) has another;
- long calls run on a pool of their own, sized to their caps, behind an admission gate that refuses a
  caller over its own cap or a replica at its cap with RESOURCE_EXHAUSTED at once;
- every other call runs on the default pool (``SCHEDULE_GRPC_MAX_WORKERS``), which long calls never use.

grpc's ``experimental_thread_pool`` attribute of a method's behaviour selects its pool (grpcio >= 1.30).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

from schedule_grpc.api.status import ServerInterceptor
from schedule_grpc.domain import caller as callers
from schedule_grpc.domain.errors import ResourceExhausted

HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_PREFIXES = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")
# Methods that wait for something other than the database: each holds a long-call slot while it lasts.
LONG_METHODS = frozenset({"/schedule.v1.ScheduleService/RunTaskNow", "/schedule.v1.ScheduleService/WatchExecutions"})
PROBE_THREADS = 4
REFLECTION_THREADS = 2
# Threads beyond the long calls' cap: a call refused by the gate is answered by one of these at once.
REFUSAL_THREADS = 2
# The caller name long calls are counted under when the service runs open and the address is unknown.
ANONYMOUS = "(anonymous)"


class Health(health.HealthServicer):
    """grpc.health.v1 with ``List``, ``Watch`` messages only on a change, and watches ended on shutdown.

    ``Watch`` is non-blocking: it holds no server thread between messages.
    """

    def __init__(self) -> None:
        super().__init__(experimental_non_blocking=True)
        self._contexts: dict[Callable[[Any], None], grpc.ServicerContext] = {}

    def List(
        self, request: health_pb2.HealthListRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthListResponse:
        response = health_pb2.HealthListResponse()
        with self._lock:
            for service, status in self._server_status.items():
                response.statuses[service].status = status
        return response

    def Watch(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.ServicerContext,
        send_response_callback: Callable[[Any], None] | None = None,
    ) -> Any:
        if send_response_callback is not None:
            callback = send_response_callback
            with self._lock:
                self._contexts[callback] = context
            context.add_callback(lambda: self._forget(callback))
        return super().Watch(request, context, send_response_callback)

    def _forget(self, callback: Callable[[Any], None]) -> None:
        with self._lock:
            self._contexts.pop(callback, None)

    def set(self, service: str, status: Any) -> None:
        """Publishes ``status``; watchers hear of it only when it differs from the last one."""
        with self._lock:
            if self._server_status.get(service) == status:
                return
            super().set(service, status)

    def end_watches(self) -> None:
        """Ends every open Watch with UNAVAILABLE (the server is going away: reconnect elsewhere)."""
        with self._lock:
            watches = list(self._contexts.items())
            self._contexts.clear()
        for callback, context in watches:
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details("server shutting down; watch another replica")
            with contextlib.suppress(Exception):
                callback(None)

    @property
    def watchers(self) -> int:
        with self._lock:
            return len(self._contexts)


class LongCalls:
    """Admission of long calls: at most ``per_replica`` at once, at most ``per_caller`` for one caller."""

    def __init__(self, *, per_replica: int, per_caller: int) -> None:
        self.per_replica = per_replica
        self.per_caller = min(per_caller, per_replica)
        self._lock = threading.Lock()
        self._by_caller: dict[str, int] = {}
        self._total = 0

    @contextlib.contextmanager
    def hold(self, peer: str = ANONYMOUS) -> Iterator[None]:
        """A slot for the current caller for the length of the block; ResourceExhausted when there is none.

        Running open (no credentials), callers are told apart by ``peer``, their address.
        """
        current = callers.current()
        name = current.name if current else peer
        with self._lock:
            held = self._by_caller.get(name, 0)
            if held >= self.per_caller:
                raise ResourceExhausted(
                    f"{name} already holds {held} long calls (RunTaskNow, WatchExecutions), its limit",
                    retry_after_s=1.0,
                )
            if self._total >= self.per_replica:
                raise ResourceExhausted(
                    f"this replica serves {self._total} long calls (RunTaskNow, WatchExecutions), its limit",
                    retry_after_s=1.0,
                )
            self._by_caller[name] = held + 1
            self._total += 1
        try:
            yield
        finally:
            with self._lock:
                self._total -= 1
                left = self._by_caller[name] - 1
                if left:
                    self._by_caller[name] = left
                else:
                    del self._by_caller[name]  # an idle caller costs no memory

    @property
    def held(self) -> int:
        with self._lock:
            return self._total


class CapacityRouter(ServerInterceptor):
    """The outermost interceptor: sends each method to its pool, health straight to its servicer.

    Health bypasses the other interceptors on purpose: it needs no credentials, should not flood the RPC
    metrics with probes, and its non-blocking ``Watch`` must reach the server unwrapped.
    """

    def __init__(self, health_servicer: Health, long_calls: LongCalls) -> None:
        self.probe_pool = futures.ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="grpc-probe")
        self.reflection_pool = futures.ThreadPoolExecutor(
            max_workers=REFLECTION_THREADS, thread_name_prefix="grpc-reflection"
        )
        self.long_pool = futures.ThreadPoolExecutor(
            max_workers=long_calls.per_replica + REFUSAL_THREADS, thread_name_prefix="grpc-long"
        )
        self._health = _health_handlers(health_servicer, self.probe_pool)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        probe = self._health.get(method)
        if probe is not None:
            return probe
        handler = continuation(details)
        if handler is None:
            return None
        if method in LONG_METHODS:
            return _route(handler, self.long_pool)
        if method.startswith(REFLECTION_PREFIXES):
            return _route(handler, self.reflection_pool)
        return handler

    def shutdown(self) -> None:
        self.probe_pool.shutdown(wait=False, cancel_futures=True)
        self.reflection_pool.shutdown(wait=False, cancel_futures=True)
        self.long_pool.shutdown(wait=False, cancel_futures=True)


def _route(
    handler: grpc.RpcMethodHandler[Any, Any], pool: futures.ThreadPoolExecutor
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, its behaviour run on ``pool``."""
    changes = {
        kind: _in_pool(behaviour, pool)
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
        if (behaviour := getattr(handler, kind)) is not None
    }
    return handler._replace(**changes)  # type: ignore[attr-defined, no-any-return]


def _in_pool(behaviour: Callable[..., Any], pool: futures.ThreadPoolExecutor) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        return behaviour(*args, **kwargs)

    run.experimental_thread_pool = pool  # type: ignore[attr-defined]
    if getattr(behaviour, "experimental_non_blocking", False):
        run.experimental_non_blocking = True  # type: ignore[attr-defined]
    return run


def _health_handlers(servicer: Health, pool: futures.ThreadPoolExecutor) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            servicer.Check,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        ),
        "List": grpc.unary_unary_rpc_method_handler(
            servicer.List,
            request_deserializer=health_pb2.HealthListRequest.FromString,
            response_serializer=health_pb2.HealthListResponse.SerializeToString,
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(
            servicer.Watch,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        ),
    }
    return {f"/{HEALTH_SERVICE}/{name}": _route(handler, pool) for name, handler in handlers.items()}


class CachedChain(ServerInterceptor):
    """Runs ``interceptors`` in order (the first outermost), building each method's handler once.

    grpc calls every interceptor on every call, and each wraps the handler anew: four interceptors meant
    four handler objects and their closures per call. The wrapped handler depends on the method only
    (what a call carries is read inside it, from its context), so it is kept per method. A lookup of an
    unknown method is not kept: callers cannot grow the table.
    """

    MAX_METHODS = 1024

    def __init__(self, interceptors: list[ServerInterceptor]) -> None:
        self._interceptors = interceptors
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._handlers.get(details.method)
        if handler is not None:
            return handler
        chain = self._interceptors

        def run(index: int, call: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
            if index == len(chain):
                return continuation(call)
            return chain[index].intercept_service(lambda inner: run(index + 1, inner), call)

        handler = run(0, details)
        if handler is not None and len(self._handlers) < self.MAX_METHODS:
            self._handlers[details.method] = handler
        return handler
