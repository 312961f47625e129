"""The one table from domain errors to gRPC and HTTP codes, and the interceptor that applies it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from schedule_grpc.domain import errors

log = logging.getLogger(__name__)

DOMAIN = "schedule.v1"

# error class -> (gRPC status code, HTTP status). Looked up along the class's MRO.
ERROR_CODES: dict[type[errors.ScheduleError], tuple[grpc.StatusCode, int]] = {
    errors.InvalidArgument: (grpc.StatusCode.INVALID_ARGUMENT, 400),
    errors.NotFound: (grpc.StatusCode.NOT_FOUND, 404),
    errors.AlreadyExists: (grpc.StatusCode.ALREADY_EXISTS, 409),
    errors.FailedPrecondition: (grpc.StatusCode.FAILED_PRECONDITION, 409),
    errors.Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, 401),
    errors.PermissionDenied: (grpc.StatusCode.PERMISSION_DENIED, 403),
    errors.ResourceExhausted: (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    errors.Unavailable: (grpc.StatusCode.UNAVAILABLE, 503),
    errors.Unimplemented: (grpc.StatusCode.UNIMPLEMENTED, 501),
    errors.DeadlineExceeded: (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    errors.ScheduleError: (grpc.StatusCode.INTERNAL, 500),
}


# gRPC codes no domain error maps to, and the HTTP status the shim answers them with.
_OTHER_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.DATA_LOSS: 500,
}


def http_status_for(code: grpc.StatusCode) -> int:
    """The HTTP status of a gRPC code: the one ERROR_CODES gives it (first row wins), else the table above."""
    for grpc_code, http in ERROR_CODES.values():
        if grpc_code == code:
            return http
    return _OTHER_HTTP_STATUS.get(code, 500)


def codes_for(error: errors.ScheduleError) -> tuple[grpc.StatusCode, int]:
    for cls in type(error).__mro__:
        if cls in ERROR_CODES:
            return ERROR_CODES[cls]
    raise AssertionError("ScheduleError is in the table")  # pragma: no cover


def to_status(error: errors.ScheduleError) -> grpc.Status:
    """A rich status: ErrorInfo always; BadRequest for a bad field; RetryInfo for a limit."""
    code, _ = codes_for(error)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN)
    details = [info]
    if isinstance(error, errors.InvalidArgument):
        info.metadata["field"] = error.field
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.description)
                ]
            )
        )
    if isinstance(error, errors.ResourceExhausted):
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromMilliseconds(max(1, round(error.retry_after_s * 1000)))
        details.append(retry)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=error.message)
    for detail in details:
        status.details.add().Pack(detail)
    return rpc_status.to_status(status)


if TYPE_CHECKING:  # grpc-stubs makes the class generic; at run time it is not subscriptable
    ServerInterceptor = grpc.ServerInterceptor[Any, Any]
else:
    ServerInterceptor = grpc.ServerInterceptor


class ErrorInterceptor(ServerInterceptor):
    """Maps domain errors to their status; logs anything else with its stack trace as INTERNAL."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        if handler is not None and handler.unary_stream is not None:
            return _guard_stream(handler, details.method)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = details.method

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                if isinstance(request, Undecodable):
                    raise request.error()
                return inner(request, context)
            except errors.ScheduleError as error:
                context.abort_with_status(to_status(error))
            except Exception:
                log.exception("unhandled error in %s", method, extra={"method": method})
                context.abort(grpc.StatusCode.INTERNAL, "internal error; it has been logged")

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=_tolerant(handler.request_deserializer, method),
            response_serializer=handler.response_serializer,
        )


class Undecodable:
    """A request the protobuf runtime could not parse (nested past its limit of 100 messages, or broken).

    grpc would answer INTERNAL ("Exception deserializing request!"); the method answers INVALID_ARGUMENT.
    """

    def __init__(self, reason: str, field: str) -> None:
        self.reason = reason
        self.field = field

    def error(self) -> errors.InvalidArgument:
        hint = "; metadata may nest at most 20 levels" if self.field == "metadata" else ""
        return errors.InvalidArgument(self.field, f"cannot be decoded ({self.reason}){hint}")


# The request field that can nest (a Struct), by method; other requests are named as a whole.
_NESTING_FIELDS = {"/schedule.v1.ScheduleService/RegisterTask": "metadata"}


def _tolerant(deserializer: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    decode = deserializer
    field = _NESTING_FIELDS.get(method, "request")

    def tolerant(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as error:  # DecodeError, RecursionError: the bytes are the caller's fault
            return Undecodable(errors.excerpt(str(error) or type(error).__name__, 120), field)

    return tolerant


def _guard_stream(handler: grpc.RpcMethodHandler[Any, Any], method: str) -> grpc.RpcMethodHandler[Any, Any]:
    """The same mapping for server-streaming methods, whose errors surface while the stream is read."""
    inner = handler.unary_stream
    assert inner is not None

    def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            if isinstance(request, Undecodable):
                raise request.error()
            yield from inner(request, context)
        except errors.ScheduleError as error:
            context.abort_with_status(to_status(error))
        except Exception:
            log.exception("unhandled error in %s", method, extra={"method": method})
            context.abort(grpc.StatusCode.INTERNAL, "internal error; it has been logged")

    return grpc.unary_stream_rpc_method_handler(
        guarded,
        request_deserializer=_tolerant(handler.request_deserializer, method),
        response_serializer=handler.response_serializer,
    )
