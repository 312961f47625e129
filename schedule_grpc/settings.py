"""One frozen settings object, read from SCHEDULE_* environment variables and validated at start-up."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is malformed; the message names the variable."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(value: str) -> T:
        result = kind(value)
        if not result > 0:  # type: ignore[operator]
            raise ValueError("must be greater than 0")
        return result

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _database_url(value: str) -> str:
    if not value.startswith(("sqlite://", "postgresql+psycopg://", "postgresql://")):
        raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
    if value.startswith("postgresql://"):  # psycopg 3 is the driver we ship
        value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
    return value


def _schedule(value: str) -> str:
    from schedule_grpc.cron import CronSchedule, InvalidSchedule

    try:
        CronSchedule.parse(value, "UTC")
    except InvalidSchedule as error:
        raise ValueError(error.reason) from None
    return value


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9464 or [::]:9464")
    return value


def _setting(default: Any, parse: Callable[[str], Any], doc: str) -> Any:
    return dataclasses.field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. The environment variable is SCHEDULE_ + the field name in upper case."""

    grpc_address: str = _setting("[::]:50051", str, "gRPC listen address (host:port).")
    database_url: str = _setting(
        "sqlite:///schedule.db",
        _database_url,
        "SQLAlchemy URL: a SQLite file (the default, under the working directory) or postgresql+psycopg://...",
    )
    migrate_on_start: bool = _setting(True, _bool, "Apply pending database migrations at start-up.")
    db_pool_size: int = _setting(10, _positive(int), "Database connections kept per replica.")
    grpc_max_workers: int = _setting(16, _positive(int), "Threads serving gRPC calls.")
    health_interval_s: float = _setting(2.0, _positive(float), "Seconds between database health checks.")
    shutdown_grace_s: float = _setting(10.0, _positive(float), "Seconds in-flight calls get on shutdown.")
    log_level: str = _setting("INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "Log level.")
    log_format: str = _setting("json", _choice("json", "text"), "json: one JSON object per line; text: for humans.")
    metrics_address: str = _setting(
        "[::]:9464", _address, "Prometheus /metrics and the /status page (host:port); empty: not served."
    )
    watch_poll_s: float = _setting(
        0.5, _positive(float), "Seconds between WatchExecutions reads when no notification arrives (SQLite polls)."
    )
    watch_heartbeat_s: float = _setting(
        15.0, _positive(float), "Seconds after which a quiet WatchExecutions stream gets a progress cursor."
    )
    watch_max_streams: int = _setting(8, _positive(int), "WatchExecutions streams one replica serves at once.")
    execution_retention_days: float = _setting(
        90.0, _positive(float), "Days executions are kept (a task's history_retention overrides it)."
    )
    dead_letter_retention_days: float = _setting(90.0, _positive(float), "Days dead-letter entries are kept.")
    event_retention_days: float = _setting(
        7.0, _positive(float), "Days execution events are kept (how far back WatchExecutions can resume)."
    )
    retention_batch_size: int = _setting(1000, _positive(int), "Rows the retention task deletes per transaction.")
    retention_max_batches: int = _setting(
        1000, _positive(int), "Batches one run of the retention task deletes per table at most (it continues next run)."
    )
    retention_schedule: str = _setting(
        "30 3 * * *",
        _schedule,
        "Schedule (UTC) of the built-in cleanup-execution-history task installed at start-up; empty: not installed.",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Reads SCHEDULE_* variables; raises SettingsError naming the first bad one."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            variable = f"SCHEDULE_{field.name.upper()}"
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            try:
                values[field.name] = field.metadata["parse"](raw)
            except ValueError as error:
                raise SettingsError(f"{variable}={raw!r}: {error}") from None
        return cls(**values)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for every setting: the README's table."""
        return [(f"SCHEDULE_{f.name.upper()}", str(f.default), f.metadata["doc"]) for f in dataclasses.fields(cls)]
