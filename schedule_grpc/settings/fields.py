"""The Settings fields: every knob of the service, its default, how it is read and what it does."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from schedule_grpc.settings import parse
from schedule_grpc.settings.parse import SettingsError

# Longest fire lead accepted: the overlap policy and next_run are decided that much ahead.
MAX_FIRE_LEAD_S = 10.0


def _setting(default: Any, reader: Callable[[str], Any], doc: str, *, secret: bool = False) -> Any:
    return dataclasses.field(default=default, metadata={"parse": reader, "doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. The environment variable is SCHEDULE_ + the field name in upper case."""

    grpc_address: str = _setting("[::]:50051", str, "gRPC listen address (host:port).")
    database_url: str = _setting(
        "sqlite:///schedule.db",
        parse.database_url,
        "SQLAlchemy URL: a SQLite file (the default, under the working directory) or postgresql+psycopg://...",
    )
    migrate_on_start: bool = _setting(True, parse.boolean, "Apply pending database migrations at start-up.")
    db_pool_size: int = _setting(10, parse.positive(int), "Database connections kept per replica.")
    grpc_max_workers: int = _setting(16, parse.positive(int), "Threads serving gRPC calls.")
    health_interval_s: float = _setting(2.0, parse.positive(float), "Seconds between database health checks.")
    shutdown_grace_s: float = _setting(10.0, parse.positive(float), "Seconds in-flight calls get on shutdown.")
    shutdown_drain_s: float = _setting(
        5.0,
        parse.non_negative,
        "Seconds health reports NOT_SERVING on SIGTERM before the listeners close (probes and load balancers see it).",
    )
    long_calls_max: int = _setting(
        16,
        parse.positive(int),
        "RunTaskNow waits and WatchExecutions streams one replica serves at once (own threads).",
    )
    long_calls_per_caller: int = _setting(
        4, parse.positive(int), "RunTaskNow waits and WatchExecutions streams one caller may hold at once on a replica."
    )
    engine_enabled: bool = _setting(
        True, parse.boolean, "Run the scheduling engine (fires tasks while this replica is the elected leader)."
    )
    replica_id: str = _setting("", str, "This replica's name in leader epochs and logs (default: host name and pid).")
    reconcile_interval_s: float = _setting(
        60.0, parse.positive(float), "Seconds between full reconciliations of the tasks into the scheduler (leader)."
    )
    max_catchup_rows_per_pass: int = _setting(
        20000, parse.positive(int), "Catch-up rows (pending and missed) one reconciliation writes, all tasks together."
    )
    leader_retry_interval_s: float = _setting(
        0.5, parse.positive(float), "Seconds between leader-lock attempts (followers) and lock checks (leader)."
    )
    leader_grace_s: float = _setting(
        3.0,
        parse.positive(float),
        "Seconds past the leader's lease term (2 s, renewed every second by its firing loop) before a follower"
        " replaces a silent leader.",
    )
    log_level: str = _setting("INFO", parse.choice("DEBUG", "INFO", "WARNING", "ERROR"), "Log level.")
    log_format: str = _setting(
        "json", parse.choice("json", "text"), "json: one JSON object per line; text: for humans."
    )
    executor_concurrency: int = _setting(
        4, parse.positive(int), "Executions of local-lane handlers this replica runs at once (worker processes)."
    )
    executor_remote_concurrency: int = _setting(
        1024,
        parse.positive(int),
        "Executions of remote-lane handlers (network calls) in flight at once on the event loop.",
    )
    executor_owner_share: float = _setting(
        0.5, parse.ratio, "Largest share of either lane one task owner may hold (at least one slot), e.g. 0.5."
    )
    executor_manual_headroom: int = _setting(
        2, int, "Extra local-lane slots only RunTaskNow may use, so it never waits behind others' work."
    )
    executor_poll_interval_s: float = _setting(
        0.5, parse.positive(float), "Longest wait before the executor looks for due executions without being woken."
    )
    fire_lead_s: float = _setting(
        1.0,
        parse.between(0, MAX_FIRE_LEAD_S),
        "Seconds before its instant that an occurrence is stored and claimed, so that its execution starts at the"
        " instant itself; 0: stored and claimed at the instant; at most 10, and at most a third of the executor"
        " lease is used. The overlap policy decides that much ahead.",
    )
    executor_lease_s: float = _setting(
        30.0, parse.positive(float), "Lease of a running execution; renewed every third of it, recovered once expired."
    )
    executor_memory_limit_mb: int = _setting(
        512, parse.positive(int), "Memory (MiB) a handler may allocate in its worker process, unless its task says."
    )
    smtp_host: str = _setting("", str, "SMTP server for alert emails; empty: alerts are only logged.")
    smtp_port: int = _setting(587, parse.positive(int), "SMTP server port.")
    smtp_username: str = _setting("", str, "SMTP login; empty: no login.")
    smtp_password: str = _setting("", str, "SMTP password.", secret=True)
    smtp_starttls: bool = _setting(
        True, parse.boolean, "Upgrade the SMTP connection with STARTTLS (certificate verified)."
    )
    smtp_ca_file: str = _setting("", str, "CA bundle verifying the SMTP server; empty: the system's.")
    smtp_from: str = _setting("schedule@localhost", str, "Sender address of alert emails.")
    smtp_to: str = _setting("", str, "Comma-separated recipients of alert emails (required with SMTP_HOST).")
    smtp_timeout_s: float = _setting(10.0, parse.positive(float), "Seconds an SMTP connection or command may take.")
    smtp_retries: int = _setting(5, int, "Retries of an undelivered alert (1, 2, 4, ... s apart).")

    http_address: str = _setting(
        "", parse.address_or_off, "HTTP/JSON shim listen address (host:port), e.g. [::]:8080; empty or off: no shim."
    )
    http_max_body_bytes: int = _setting(262144, parse.positive(int), "Largest HTTP request body accepted, in bytes.")
    auth_tokens: str = _setting(
        "",
        parse.token_entries,
        "Bearer tokens, comma-separated caller:role:sha256-hex-of-token (role service or admin); only hashes are kept.",
        secret=True,
    )
    allow_open: bool = _setting(
        False, parse.boolean, "Serve without credentials on a non-loopback address (refused unless this is true)."
    )
    grpc_tls_cert_file: str = _setting("", str, "PEM server certificate for gRPC over TLS (with the key file).")
    grpc_tls_key_file: str = _setting("", str, "PEM private key of the gRPC server certificate.")
    grpc_tls_client_ca_file: str = _setting(
        "", str, "PEM CA bundle; when set, gRPC requires client certificates (mutual TLS) and their name is the caller."
    )
    tls_admin_names: str = _setting("", parse.names, "Client certificate names (comma-separated) given the admin role.")
    health_address: str = _setting(
        "", parse.address_or_off, "Extra plaintext gRPC health-only listen address for probes that cannot do TLS; off."
    )
    rate_limit_per_s: float = _setting(
        20.0, parse.positive(float), "Calls per second per caller (token bucket refill)."
    )
    rate_limit_burst: int = _setting(40, parse.positive(int), "Calls a caller may make at once (token bucket size).")
    expensive_rate_limit_per_s: float = _setting(
        0.5, parse.positive(float), "Expensive calls (RunTaskNow, InitializeDefaultTasks, ...) per second per caller."
    )
    expensive_rate_limit_burst: int = _setting(5, parse.positive(int), "Expensive calls a caller may make at once.")
    rate_limit_max_callers: int = _setting(
        10000,
        parse.positive(int),
        "Rate-limit buckets kept per replica (least recently used dropped first: bounded memory).",
    )
    auth_failure_per_s: float = _setting(
        1.0, parse.positive(float), "Failed authentications per second one peer address may make, after its burst."
    )
    auth_failure_burst: int = _setting(
        10,
        parse.positive(int),
        "Failed authentications a peer address may make at once before it is refused for a while.",
    )
    max_tasks_per_caller: int = _setting(10000, parse.positive(int), "Tasks one caller may own (open mode: in all).")
    max_metadata_bytes_per_caller: int = _setting(
        67108864, parse.positive(int), "Bytes of task metadata (serialised JSON) one caller's tasks may hold together."
    )

    # --- the built-in handlers (schedule_grpc/handlers/) ---
    platform_database_url: str = _setting(
        "",
        parse.optional_database_url,
        "Database the built-in handlers work on (sessions, API keys, imports...); empty: the service's own.",
    )
    embeddings_url: str = _setting(
        "",
        parse.url,
        "OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1/embeddings; empty: embedding tasks fail.",
    )
    embeddings_model: str = _setting("text-embedding-3-small", str, "Model named in embeddings requests.")
    embeddings_api_key: str = _setting("", str, "Bearer key sent to the embeddings endpoint; empty: none.", secret=True)
    embeddings_batch_size: int = _setting(64, parse.positive(int), "Texts sent per embeddings request.")
    backup_dir: str = _setting("backups", str, "Directory backup-database writes to (created if missing).")
    backup_retention: int = _setting(7, parse.positive(int), "Backups backup-database keeps; older ones are deleted.")
    health_check_targets: str = _setting(
        "",
        str,
        "Services health-check-services probes: name=url,... with grpc://, grpcs://, http:// or https:// URLs.",
    )
    rate_limit_threshold: float = _setting(0.8, parse.ratio, "Usage ratio above which check-rate-limits alerts.")
    mcp_registry_url: str = _setting(
        "https://registry.modelcontextprotocol.io", parse.url, "Base URL of the MCP server registry (GET /v0/servers)."
    )
    public_apis_url: str = _setting(
        "https://api.apis.guru/v2/list.json", parse.url, "API directory in the APIs.guru list.json format."
    )
    handler_http_timeout_s: float = _setting(
        30.0, parse.positive(float), "Deadline of each outbound request of the built-in handlers."
    )

    # --- tenancy: what a task may reach, and what callers may ask for ---
    egress_allow: str = _setting(
        "",
        parse.networks,
        "Networks (comma-separated CIDRs) tasks may reach though denied by default, e.g. 127.0.0.0/8,10.0.0.0/8.",
    )
    egress_deny: str = _setting("", parse.networks, "Networks (comma-separated CIDRs) tasks may never connect to.")
    secrets_dir: str = _setting(
        "",
        parse.directory,
        'Directory of the secret files metadata {"secretRef": "<file>"} names (e.g. a Kubernetes secret volume).',
    )
    handler_tables: str = _setting(
        "",
        parse.handler_tables,
        "Tables each data handler may touch: handler=table|schema.table,...; a handler not listed keeps its defaults.",
    )
    max_memory_limit_mb: int = _setting(
        4096, parse.positive(int), "Largest memory_limit_mb a task may set (MiB); larger values are refused."
    )
    max_task_timeout_s: float = _setting(
        6 * 3600.0, parse.positive(float), "Longest timeout a task may set (seconds); longer values are refused."
    )

    metrics_address: str = _setting(
        "127.0.0.1:9464",
        parse.address_or_off,
        "Prometheus /metrics and the /status page (host:port; loopback unless told: unauthenticated); off: none.",
    )
    watch_poll_s: float = _setting(
        0.5, parse.positive(float), "Seconds between WatchExecutions reads when no notification arrives (SQLite polls)."
    )
    watch_heartbeat_s: float = _setting(
        15.0, parse.positive(float), "Seconds after which a quiet WatchExecutions stream gets a progress cursor."
    )
    watch_max_streams: int = _setting(8, parse.positive(int), "WatchExecutions streams one replica serves at once.")
    execution_retention_days: float = _setting(
        90.0, parse.positive(float), "Days executions are kept (a task's history_retention overrides it)."
    )
    dead_letter_retention_days: float = _setting(90.0, parse.positive(float), "Days dead-letter entries are kept.")
    event_retention_days: float = _setting(
        7.0, parse.positive(float), "Days execution events are kept (how far back WatchExecutions can resume)."
    )
    retention_batch_size: int = _setting(1000, parse.positive(int), "Rows the retention task deletes per transaction.")
    retention_max_batches: int = _setting(
        1000,
        parse.positive(int),
        "Batches one run of the retention task deletes per table at most (it continues next run).",
    )
    access_log_sample: float = _setting(
        1.0,
        parse.fraction,
        "Share of successful RPCs written to the access log, 0 to 1 (0: none); failed RPCs are always written.",
    )
    retention_schedule: str = _setting(
        "30 3 * * *",
        parse.schedule,
        "Schedule (UTC) of the built-in cleanup-execution-history task installed at start-up; empty: not installed.",
    )

    def __post_init__(self) -> None:
        if self.smtp_host and not self.smtp_recipients:
            raise SettingsError("SCHEDULE_SMTP_TO: at least one recipient is required when SCHEDULE_SMTP_HOST is set")

    @property
    def fire_lead_used_s(self) -> float:
        """The lead the engine and the executors use: SCHEDULE_FIRE_LEAD_S, at most a third of the executor
        lease (a held execution's lease is not renewed before its instant)."""
        return min(self.fire_lead_s, self.executor_lease_s / 3)

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
                shown = "<hidden>" if field.metadata.get("secret") else repr(raw)
                raise SettingsError(f"{variable}={shown}: {error}") from None
        return cls(**values)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for every setting: the README's table."""
        return [(f"SCHEDULE_{f.name.upper()}", str(f.default), f.metadata["doc"]) for f in dataclasses.fields(cls)]
