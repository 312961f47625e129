"""One structured access-log line per RPC: method, caller, status code, duration.

Successful calls are sampled (``SCHEDULE_ACCESS_LOG_SAMPLE``); failed ones are always written, so a
refusal or an error is never missing from the log.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from schedule_grpc.api.status import ServerInterceptor
from schedule_grpc.domain import caller as callers

log = logging.getLogger("schedule_grpc.access")


def _code(context: grpc.ServicerContext, failed: bool) -> str:
    code = getattr(context, "code", lambda: None)()  # set by abort()/set_code(); grpc-stubs lacks code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN" if failed else "OK"


class AccessLog(ServerInterceptor):
    """Writes ``rpc`` records to the ``schedule_grpc.access`` logger. Put it first (outermost)."""

    def __init__(self, sample: float, *, draw: Callable[[], float] = random.random) -> None:
        self._sample = sample
        self._draw = draw

    def _write(self, method: str, seen: list[callers.Caller | None], code: str, started: float) -> None:
        if code == "OK" and (self._sample <= 0 or self._draw() >= self._sample):
            return
        who = next((c for c in reversed(seen) if c is not None), None)
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        log.log(
            logging.INFO if code == "OK" else logging.WARNING,
            "%s %s %s %.1fms",
            method,
            who.name if who else "-",
            code,
            duration_ms,
            extra={"rpc": method, "caller": who.name if who else "", "code": code, "duration_ms": duration_ms},
        )

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method.rpartition("/")[2]
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            def logged_unary(request: Any, context: grpc.ServicerContext) -> Any:
                started, failed = time.perf_counter(), True
                with callers.observed() as seen:
                    try:
                        response = unary(request, context)
                        failed = False
                        return response
                    finally:
                        self._write(method, seen, _code(context, failed), started)

            return grpc.unary_unary_rpc_method_handler(logged_unary, **kwargs)
        if handler.unary_stream is not None:
            stream = handler.unary_stream

            def logged_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                started, failed = time.perf_counter(), True
                with callers.observed() as seen:
                    try:
                        yield from stream(request, context)
                        failed = False
                    finally:
                        self._write(method, seen, _code(context, failed), started)

            return grpc.unary_stream_rpc_method_handler(logged_stream, **kwargs)
        return handler  # client and bidirectional streams: none in this API
