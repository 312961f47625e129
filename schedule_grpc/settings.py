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


def _optional_database_url(value: str) -> str:
    return _database_url(value) if value else value


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _ratio(value: str) -> float:
    result = float(value)
    if not 0 < result <= 1:
        raise ValueError("must be a number in (0, 1]")
    return result


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
    # --- the built-in handlers (schedule_grpc/handlers/) ---
    platform_database_url: str = _setting(
        "",
        _optional_database_url,
        "Database the built-in handlers work on (sessions, API keys, imports...); empty: the service's own.",
    )
    embeddings_url: str = _setting(
        "",
        _url,
        "OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1/embeddings; empty: embedding tasks fail.",
    )
    embeddings_model: str = _setting("text-embedding-3-small", str, "Model named in embeddings requests.")
    embeddings_api_key: str = _setting("", str, "Bearer key sent to the embeddings endpoint; empty: none.")
    embeddings_batch_size: int = _setting(64, _positive(int), "Texts sent per embeddings request.")
    backup_dir: str = _setting("backups", str, "Directory backup-database writes to (created if missing).")
    backup_retention: int = _setting(7, _positive(int), "Backups backup-database keeps; older ones are deleted.")
    health_check_targets: str = _setting(
        "",
        str,
        "Services health-check-services probes: name=url,... with grpc://, grpcs://, http:// or https:// URLs.",
    )
    rate_limit_threshold: float = _setting(0.8, _ratio, "Usage ratio above which check-rate-limits alerts.")
    mcp_registry_url: str = _setting(
        "https://registry.modelcontextprotocol.io", _url, "Base URL of the MCP server registry (GET /v0/servers)."
    )
    public_apis_url: str = _setting(
        "https://api.apis.guru/v2/list.json", _url, "API directory in the APIs.guru list.json format."
    )
    handler_http_timeout_s: float = _setting(
        30.0, _positive(float), "Deadline of each outbound request of the built-in handlers."
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
