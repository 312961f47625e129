"""Validation of what callers send: each failure names the field and says why."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from schedule_grpc.domain.cron import CronSchedule, InvalidSchedule
from schedule_grpc.domain.errors import InvalidArgument, excerpt
from schedule_grpc.domain.models import DEFAULT_CATCHUP_WINDOW, DEFAULT_TIMEOUT, JSON, OverlapPolicy, RetryPolicy

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 20
MAX_TIMEOUT = timedelta(hours=24)
MAX_CATCHUP_WINDOW = timedelta(days=7)
MAX_DELAY = timedelta(days=1)
MAX_RETRIES = 100
MAX_PAGE = 1000
MAX_PREVIEW = 100
MEMORY_LIMIT_MB = (16, 65536)


@dataclass(frozen=True)
class RetryPolicyInput:
    """A retry policy as sent: None means "the default"."""

    max_retries: int | None = None
    initial_delay: timedelta | None = None
    multiplier: float | None = None
    max_delay: timedelta | None = None
    jitter: bool | None = None


@dataclass(frozen=True)
class NewTask:
    """A RegisterTask request in domain terms: None means "the default"."""

    name: str
    schedule: str
    handler: str
    enabled: bool | None = None
    metadata: Mapping[str, JSON] = field(default_factory=dict)
    timezone: str = ""
    retry_policy: RetryPolicyInput = field(default_factory=RetryPolicyInput)
    timeout: timedelta | None = None
    overlap_policy: OverlapPolicy | None = None
    catchup_window: timedelta | None = None
    critical: bool = False
    memory_limit_mb: int | None = None
    history_retention: timedelta | None = None


def name(value: str, field_name: str = "name") -> str:
    if not value:
        raise InvalidArgument(field_name, "is required")
    if not NAME_RE.fullmatch(value):
        raise InvalidArgument(
            field_name,
            "must be 1-128 characters of letters, digits and . _ : -, starting with a letter or digit",
        )
    return value


def schedule(expression: str, timezone: str) -> CronSchedule:
    if not expression.strip():
        raise InvalidArgument("schedule", "is required")
    try:
        return CronSchedule.parse(expression, timezone or "UTC")
    except InvalidSchedule as error:
        raise InvalidArgument(error.field, error.reason) from error


def metadata(value: Mapping[str, JSON]) -> dict[str, JSON]:
    _walk(value, "metadata", 1)
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidArgument("metadata", f"is {size} bytes serialised; at most {MAX_METADATA_BYTES} are allowed")
    return dict(value)


def _walk(value: JSON | Mapping[str, JSON], path: str, depth: int) -> None:
    """Refuses what a database or a protocol would choke on later: deep nesting, NUL characters."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidArgument(path, f"nests deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidArgument(path, "must not contain the NUL character (U+0000)")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if "\x00" in key:
                raise InvalidArgument(path, "has a key with the NUL character (U+0000)")
            _walk(item, f"{path}.{excerpt(key, 40)}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", depth + 1)


def duration(value: timedelta, field_name: str, *, minimum: timedelta, maximum: timedelta) -> timedelta:
    if not minimum <= value <= maximum:
        raise InvalidArgument(field_name, f"must be between {_fmt(minimum)} and {_fmt(maximum)}")
    return value


def retry_policy(value: RetryPolicyInput) -> RetryPolicy:
    default = RetryPolicy()
    max_retries = default.max_retries if value.max_retries is None else value.max_retries
    if not 0 <= max_retries <= MAX_RETRIES:
        raise InvalidArgument("retry_policy.max_retries", f"must be between 0 and {MAX_RETRIES}")
    initial = value.initial_delay if value.initial_delay is not None else default.initial_delay
    duration(initial, "retry_policy.initial_delay", minimum=timedelta(milliseconds=1), maximum=MAX_DELAY)
    multiplier = default.multiplier if value.multiplier is None else value.multiplier
    if not 1.0 <= multiplier <= 100.0:
        raise InvalidArgument("retry_policy.multiplier", "must be between 1 and 100")
    max_delay = value.max_delay if value.max_delay is not None else max(default.max_delay, initial)
    duration(max_delay, "retry_policy.max_delay", minimum=initial, maximum=MAX_DELAY)
    jitter = default.jitter if value.jitter is None else value.jitter
    return RetryPolicy(max_retries, initial, multiplier, max_delay, jitter)


def timeout(value: timedelta | None) -> timedelta:
    if value is None:
        return DEFAULT_TIMEOUT
    return duration(value, "timeout", minimum=timedelta(milliseconds=1), maximum=MAX_TIMEOUT)


def catchup_window(value: timedelta | None) -> timedelta:
    if value is None:
        return DEFAULT_CATCHUP_WINDOW
    return duration(value, "catchup_window", minimum=timedelta(0), maximum=MAX_CATCHUP_WINDOW)


MIN_HISTORY_RETENTION = timedelta(hours=1)
MAX_HISTORY_RETENTION = timedelta(days=36525)


def history_retention(value: timedelta | None) -> timedelta | None:
    if value is None:
        return None
    return duration(value, "history_retention", minimum=MIN_HISTORY_RETENTION, maximum=MAX_HISTORY_RETENTION)


def limit(value: int, field_name: str, *, default: int, maximum: int = MAX_PAGE) -> int:
    """A page size: 0 means the default; negative or over the maximum is an error."""
    if value == 0:
        return default
    if not 1 <= value <= maximum:
        raise InvalidArgument(field_name, f"must be between 1 and {maximum} (0 for the default, {default})")
    return value


def _fmt(value: timedelta) -> str:
    seconds = value.total_seconds()
    return f"{seconds:g}s"


def memory_limit_mb(value: int | None) -> int | None:
    if value is None:
        return None
    low, high = MEMORY_LIMIT_MB
    if not low <= value <= high:
        raise InvalidArgument("memory_limit_mb", f"must be between {low} and {high} MiB")
    return value
