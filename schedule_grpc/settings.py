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
    engine_enabled: bool = _setting(
        True, _bool, "Run the scheduling engine (fires tasks while this replica is the elected leader)."
    )
    replica_id: str = _setting("", str, "This replica's name in leader epochs and logs (default: host name and pid).")
    reconcile_interval_s: float = _setting(
        60.0, _positive(float), "Seconds between full reconciliations of the tasks into the scheduler (leader)."
    )
    leader_retry_interval_s: float = _setting(
        0.5, _positive(float), "Seconds between leader-lock attempts (followers) and lock checks (leader)."
    )
    log_level: str = _setting("INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "Log level.")
    log_format: str = _setting("json", _choice("json", "text"), "json: one JSON object per line; text: for humans.")
    executor_concurrency: int = _setting(4, _positive(int), "Executions this replica runs at once (worker processes).")
    executor_poll_interval_s: float = _setting(
        0.5, _positive(float), "Longest wait before the executor looks for due executions without being woken."
    )
    executor_lease_s: float = _setting(
        30.0, _positive(float), "Lease of a running execution; renewed every third of it, recovered once expired."
    )
    executor_memory_limit_mb: int = _setting(
        512, _positive(int), "Memory (MiB) a handler may allocate in its worker process, unless its task says."
    )
    smtp_host: str = _setting("", str, "SMTP server for alert emails; empty: alerts are only logged.")
    smtp_port: int = _setting(587, _positive(int), "SMTP server port.")
    smtp_username: str = _setting("", str, "SMTP login; empty: no login.")
    smtp_password: str = _setting("", str, "SMTP password.")
    smtp_starttls: bool = _setting(True, _bool, "Upgrade the SMTP connection with STARTTLS (certificate verified).")
    smtp_ca_file: str = _setting("", str, "CA bundle verifying the SMTP server; empty: the system's.")
    smtp_from: str = _setting("schedule@localhost", str, "Sender address of alert emails.")
    smtp_to: str = _setting("", str, "Comma-separated recipients of alert emails (required with SMTP_HOST).")
    smtp_timeout_s: float = _setting(10.0, _positive(float), "Seconds an SMTP connection or command may take.")
    smtp_retries: int = _setting(5, int, "Retries of an undelivered alert (1, 2, 4, ... s apart).")

    def __post_init__(self) -> None:
        if self.smtp_host and not self.smtp_recipients:
            raise SettingsError("SCHEDULE_SMTP_TO: at least one recipient is required when SCHEDULE_SMTP_HOST is set")

    @property
    def smtp_recipients(self) -> list[str]:
        return [r.strip() for r in self.smtp_to.split(",") if r.strip()]

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
