"""Reading a task's metadata: each reader returns the value or its default, and raises InvalidArgument
naming ``metadata.<key>`` when the value is unusable (so RegisterTask rejects it before anything runs)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def is_identifier(name: str, *, qualified: bool = False) -> bool:
    """Whether ``name`` is a plain SQL identifier (``schema.table`` too when ``qualified``)."""
    parts = name.split(".") if qualified else [name]
    return 1 <= len(parts) <= 2 and all(IDENTIFIER_RE.fullmatch(p) for p in parts)


def identifier(metadata: Mapping[str, JSON], key: str, default: str, *, qualified: bool = False) -> str:
    """A table or column name: letters, digits and underscores (``schema.table`` for tables)."""
    value = metadata.get(key, default)
    if not isinstance(value, str) or not is_identifier(value, qualified=qualified):
        shape = "a table name (optionally schema.table)" if qualified else "a column name"
        raise InvalidArgument(f"metadata.{key}", f"must be {shape} of letters, digits and underscores")
    return value


def integer(metadata: Mapping[str, JSON], key: str, default: int, *, minimum: int, maximum: int) -> int:
    value = metadata.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidArgument(f"metadata.{key}", "must be a whole number")
    if not minimum <= value <= maximum:
        raise InvalidArgument(f"metadata.{key}", f"must be between {minimum} and {maximum}")
    return int(value)


def number(metadata: Mapping[str, JSON], key: str, default: float, *, minimum: float, maximum: float) -> float:
    """A number in (minimum, maximum]."""
    value = metadata.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not minimum < value <= maximum:
        raise InvalidArgument(f"metadata.{key}", f"must be a number in ({minimum:g}, {maximum:g}]")
    return float(value)


def is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def http_url(metadata: Mapping[str, JSON], key: str, default: str) -> str:
    value = metadata.get(key, default)
    if not is_http_url(value):
        raise InvalidArgument(f"metadata.{key}", "must be an absolute http:// or https:// URL")
    return str(value)
