"""JSON in the seed's shapes, for any message: camelCase names, RFC 3339 timestamps, numbers as numbers,
and enum values as their lowercase short name ("success" for EXECUTION_STATUS_SUCCESS).

Generic rules, so a new message needs no code here:
- fields with presence (messages, ``optional``) appear when set; repeated fields always;
- other scalars appear always (``enabled: false``, ``count: 0``) except empty strings and unset enums;
- well-known types take their proto3 JSON form, Struct numbers that are whole become integers.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from schedule_grpc.domain.errors import excerpt

_WELL_KNOWN_PREFIX = "google.protobuf."
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class BadJson(ValueError):
    """The JSON does not fit the request message; the message says where and why."""


def enum_prefix(enum: EnumDescriptor) -> str:
    """``ExecutionStatus`` -> ``EXECUTION_STATUS_`` (the Buf style prefix of its values)."""
    return _CAMEL_BOUNDARY.sub("_", enum.name).upper() + "_"


def enum_short_name(enum: EnumDescriptor, number: int) -> str | int:
    value = enum.values_by_number.get(number)
    if value is None:
        return number
    return value.name.removeprefix(enum_prefix(enum)).lower()


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def is_repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is None:  # protobuf releases before FieldDescriptor.is_repeated
        return bool(getattr(field, "label") == FieldDescriptor.LABEL_REPEATED)  # noqa: B009
    return bool(flag)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _map_value(field: FieldDescriptor) -> FieldDescriptor:
    assert field.message_type is not None
    return field.message_type.fields_by_name["value"]


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.enum_type is not None:
        return enum_short_name(field.enum_type, value)
    if field.message_type is not None:
        return to_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def to_json(message: Message) -> Any:
    """A JSON-ready value of ``message`` under the rules above."""
    descriptor: Any = message.DESCRIPTOR  # the upb and pure-Python descriptor types differ in the stubs
    if descriptor.full_name.startswith(_WELL_KNOWN_PREFIX):
        return _whole(json_format.MessageToDict(message))
    out: dict[str, Any] = {}
    for field in descriptor.fields:
        value = getattr(message, field.name)
        if _is_map(field):
            value_field = _map_value(field)
            out[field.json_name] = {str(k): _scalar(value_field, v) for k, v in value.items()}
        elif is_repeated(field):
            out[field.json_name] = [_scalar(field, v) for v in value]
        elif field.has_presence:
            if message.HasField(field.name):
                out[field.json_name] = _scalar(field, value)
        elif not (value in ("", b"") or (field.enum_type is not None and value == 0)):
            out[field.json_name] = _scalar(field, value)
    return out


def field_named(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    return descriptor.fields_by_name.get(key) or next((f for f in descriptor.fields if f.json_name == key), None)


def _enum_in(field: FieldDescriptor, value: Any) -> Any:
    if not isinstance(value, str) or field.enum_type is None:
        return value
    if value in field.enum_type.values_by_name:
        return value
    full = enum_prefix(field.enum_type) + value.upper()
    if value == value.lower() and full in field.enum_type.values_by_name:
        return full
    names = sorted(enum_short_name(field.enum_type, v.number) for v in field.enum_type.values if v.number)
    raise BadJson(f"{field.json_name}: unknown value {value!r}; expected one of {', '.join(map(str, names))}")


def _expand(descriptor: Descriptor, data: Any) -> Any:
    """Rewrites short enum names to full ones, recursively; leaves everything else to json_format."""
    if not isinstance(data, dict) or descriptor.full_name.startswith(_WELL_KNOWN_PREFIX):
        return data
    out = {}
    for key, value in data.items():
        field = field_named(descriptor, key)
        if field is not None and _is_map(field) and isinstance(value, dict):
            inner = _map_value(field)
            value = {k: _one(inner, v) for k, v in value.items()}
        elif field is not None and is_repeated(field) and isinstance(value, list):
            value = [_one(field, v) for v in value]
        elif field is not None:
            value = _one(field, value)
        out[key] = value
    return out


def _one(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None:
        return _expand(field.message_type, value)
    return _enum_in(field, value)


# JSON numbers travel as IEEE doubles (google.protobuf.Value): whole numbers beyond this lose digits.
MAX_EXACT_INTEGER = 2**53


def _exact_numbers(data: Any, path: str) -> None:
    """Refuses a whole number a double cannot hold exactly, instead of storing a different one."""
    if isinstance(data, int) and not isinstance(data, bool):
        if abs(data) > MAX_EXACT_INTEGER:
            raise BadJson(f"{path or 'body'}: {data} is beyond +/-2^53; send it as a string")
    elif isinstance(data, dict):
        for key, value in data.items():
            name = excerpt(str(key), 40)
            _exact_numbers(value, f"{path}.{name}" if path else name)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _exact_numbers(value, f"{path}[{index}]")


def from_json(data: Any, message: Message) -> None:
    """Fills ``message`` from parsed JSON: names in camelCase or snake_case, enums by short or full name.

    Unknown fields and values of the wrong type raise BadJson, worded for the caller (field and expected
    type), never with the JSON library's text.
    """
    if not isinstance(data, dict):
        raise BadJson("the request body must be a JSON object")
    descriptor: Any = message.DESCRIPTOR
    try:
        _exact_numbers(data, "")
        json_format.ParseDict(_expand(descriptor, data), message)
    except BadJson:
        raise
    except json_format.ParseError as error:
        raise BadJson(_in_our_words(str(error), descriptor)) from None
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise BadJson("a value does not fit its field (wrong type, out of range or nested too deeply)") from None


_NO_FIELD = re.compile(r'has no field named "([^"]+)"')
_FAILED_FIELD = re.compile(r"Failed to parse (\w+) field")


def _in_our_words(text: str, descriptor: Descriptor) -> str:
    unknown = _NO_FIELD.search(text)
    if unknown:
        return f"unknown field {unknown.group(1)!r}"
    # "Failed to parse retryPolicy field: Failed to parse maxRetries field: ..." names the path outside in.
    path: list[str] = []
    field: FieldDescriptor | None = None
    target: Descriptor | None = descriptor
    for name in _FAILED_FIELD.findall(text):
        field = field_named(target, name) if target is not None else None
        if field is None:
            break
        path.append(field.json_name)
        target = field.message_type
    if field is None:
        return "a value does not have the type its field needs"
    return f"{'.'.join(path)}: expected {_expected(field)}"


_EXPECTED_WELL_KNOWN = {
    "google.protobuf.Duration": 'a duration such as "30s" or "1.5s"',
    "google.protobuf.Timestamp": 'an RFC 3339 time such as "2026-03-01T12:00:00Z"',
    "google.protobuf.Struct": "a JSON object",
    "google.protobuf.Value": "a JSON value",
}
_EXPECTED_SCALAR = {
    FieldDescriptor.TYPE_BOOL: "true or false",
    FieldDescriptor.TYPE_STRING: "a string",
    FieldDescriptor.TYPE_BYTES: "base64 text",
    FieldDescriptor.TYPE_DOUBLE: "a number",
    FieldDescriptor.TYPE_FLOAT: "a number",
}


def _expected(field: FieldDescriptor) -> str:
    many = "a list of " if is_repeated(field) and not _is_map(field) else ""
    if field.message_type is not None:
        return many + _EXPECTED_WELL_KNOWN.get(field.message_type.full_name, "a JSON object")
    if field.enum_type is not None:
        names = sorted(str(enum_short_name(field.enum_type, v.number)) for v in field.enum_type.values if v.number)
        return many + "one of " + ", ".join(names)
    return many + _EXPECTED_SCALAR.get(field.type, "a whole number in range")
