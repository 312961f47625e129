"""Between HTTP and the gRPC messages: the request message built from path, query and body; the response in
the seed's envelope; a gRPC error as the HTTP answer. Every error names the part of the request that is wrong."""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import error_details_pb2, status_pb2

from schedule_grpc.api import status
from schedule_grpc.api.http import marshal
from schedule_grpc.api.http.routes import Route


class HttpError(Exception):
    """An answer the shim gives itself, before or instead of a gRPC call."""

    def __init__(self, http_status: int, code: str, reason: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.http_status, self.code, self.reason, self.message = http_status, code, reason, message
        self.headers = headers or {}


def bad_request(reason: str, message: str) -> HttpError:
    return HttpError(status.http_status_for(grpc.StatusCode.INVALID_ARGUMENT), "INVALID_ARGUMENT", reason, message)


def _query_value(field: FieldDescriptor, raw: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        lowered = raw.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise bad_request("BAD_QUERY_PARAMETER", f"{field.json_name}: expected true or false, got {raw!r}")
        return lowered in ("true", "1")
    return raw


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        child = data.setdefault(part, {})
        if not isinstance(child, dict):
            raise bad_request("BAD_REQUEST_BODY", f"{dotted}: {part} must be an object")
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
            raise bad_request("MALFORMED_JSON", f"the request body is not valid JSON ({where})") from None
        except (ValueError, RecursionError):
            raise bad_request("MALFORMED_JSON", "the request body is not valid JSON or is nested too deeply") from None
        if route.body == "*":
            if not isinstance(parsed, dict):
                raise bad_request("BAD_REQUEST_BODY", "the request body must be a JSON object")
            data = parsed
        elif route.body:
            data[route.body] = parsed
        elif parsed != {}:
            raise bad_request("UNEXPECTED_BODY", f"{route.verb} {route.template} takes no request body")
    params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=False)
    if params and route.body == "*":
        raise bad_request("BAD_QUERY_PARAMETER", f"{route.verb} {route.template} takes no query parameters")
    descriptor = route.method.input_type
    from_query: dict[str, Any] = {}
    for key, values in params.items():
        target: Any = descriptor
        field = None
        for part in key.split("."):
            field = marshal.field_named(target, part) if target is not None else None
            if field is None:
                raise bad_request("BAD_QUERY_PARAMETER", f"unknown query parameter {key!r}")
            target = field.message_type
        assert field is not None
        if marshal.is_repeated(field):
            _set_path(from_query, key, [_query_value(field, v) for v in values])
        elif len(values) > 1:
            raise bad_request("BAD_QUERY_PARAMETER", f"query parameter {key!r} given more than once")
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
        raise bad_request("BAD_REQUEST_BODY", str(error)) from None
    from_query = type(request)()
    try:
        marshal.from_json(data.query, from_query)
    except marshal.BadJson as error:
        raise bad_request("BAD_QUERY_PARAMETER", str(error)) from None
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


def error_from_rpc(error: grpc.aio.AioRpcError) -> HttpError:
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
