"""The gRPC server interceptor that counts and times every call by method and status code."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from schedule_grpc.api.status import ServerInterceptor
from schedule_grpc.observability import logs
from schedule_grpc.observability.metrics import Metrics


def _code(context: grpc.ServicerContext, failed: bool) -> str:
    # set by abort()/set_code(); None when the handler returned normally (grpc-stubs lacks code())
    code = getattr(context, "code", lambda: None)()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN" if failed else "OK"


class MetricsInterceptor(ServerInterceptor):
    """grpc_server_handled_total and grpc_server_handling_seconds; binds the method into log records.

    Put it first in create_server(interceptors=...), so that it sees the status the error mapping set.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        if handler is None:
            return None
        service, _, method = details.method.lstrip("/").rpartition("/")
        metrics = self._metrics

        def record(kind: str, started: float, context: grpc.ServicerContext, failed: bool) -> None:
            metrics.rpc_handled.labels(kind, service, method, _code(context, failed)).inc()
            metrics.rpc_latency.labels(kind, service, method).observe(time.perf_counter() - started)

        if handler.unary_unary is not None:
            unary = handler.unary_unary

            def timed_unary(request: Any, context: grpc.ServicerContext) -> Any:
                started, failed = time.perf_counter(), True
                try:
                    with logs.bind(rpc=method):
                        response = unary(request, context)
                    failed = False
                    return response
                finally:
                    record("unary", started, context, failed)

            return grpc.unary_unary_rpc_method_handler(
                timed_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            stream = handler.unary_stream

            def timed_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                started, failed = time.perf_counter(), True
                try:
                    with logs.bind(rpc=method):
                        yield from stream(request, context)
                    failed = False
                finally:
                    record("server_stream", started, context, failed)

            return grpc.unary_stream_rpc_method_handler(
                timed_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client and bidirectional streams: none in this API
