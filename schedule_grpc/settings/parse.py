"""How each SCHEDULE_* value is read: parsers that return the value or raise ValueError saying why."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is malformed; the message names the variable."""


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(value: str) -> T:
        result = kind(value)
        if not result > 0:  # type: ignore[operator]
            raise ValueError("must be greater than 0")
        return result

    return parse


def non_negative(value: str) -> float:
    result = float(value)
    if not result >= 0:
        raise ValueError("must be 0 or more")
    return result


def between(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        result = float(value)
        if not low <= result <= high:
            raise ValueError(f"must be a number in [{low:g}, {high:g}]")
        return result

    return parse


def choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def database_url(value: str) -> str:
    if not value.startswith(("sqlite://", "postgresql+psycopg://", "postgresql://")):
        raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
    if value.startswith("postgresql://"):  # psycopg 3 is the driver we ship
        value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
    return value


def address_or_off(value: str) -> str:
    value = value.strip()
    if value.lower() == "off":
        return ""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("expected host:port, or off")
    return value


TOKEN_ENTRY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}:(service|admin):[0-9a-f]{64}")


def token_entries(value: str) -> str:
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    for entry in entries:
        if not TOKEN_ENTRY.fullmatch(entry):
            shown = entry.rsplit(":", 1)[0]
            raise ValueError(f"entry {shown}:... must be caller:role:sha256-hex, role service or admin")
    return ",".join(entries)


def names(value: str) -> str:
    return ",".join(name.strip() for name in value.split(",") if name.strip())


def optional_database_url(value: str) -> str:
    return database_url(value) if value else value


def url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


def ratio(value: str) -> float:
    result = float(value)
    if not 0 < result <= 1:
        raise ValueError("must be a number in (0, 1]")
    return result


def fraction(value: str) -> float:
    result = float(value)
    if not 0 <= result <= 1:
        raise ValueError("must be a number in [0, 1]")
    return result


def schedule(value: str) -> str:
    from schedule_grpc.domain.cron import CronSchedule, InvalidSchedule

    try:
        CronSchedule.parse(value, "UTC")
    except InvalidSchedule as error:
        raise ValueError(error.reason) from None
    return value


def networks(value: str) -> str:
    from schedule_grpc.security.egress import EgressPolicy

    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    EgressPolicy.parse(entries)  # raises ValueError naming the bad entry
    return ",".join(entries)


def directory(value: str) -> str:
    import os

    if not os.path.isdir(value):
        raise ValueError("is not a directory")
    return value


def handler_tables(value: str) -> str:
    """``handler=table|schema.table,...``: validated names; the service's own tables are refused."""
    from schedule_grpc.handlers.tables import parse_handler_tables

    parse_handler_tables(value)
    return value.strip()
