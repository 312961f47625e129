"""The seed's 13 default tasks, with the seed's schedules (InitializeDefaultTasks installs them)."""

from __future__ import annotations

from datetime import timedelta

from schedule_grpc.domain.validation import NewTask

# (name = handler, schedule, category, description, timeout)
_DEFAULTS: list[tuple[str, str, str, str, timedelta]] = [
    ("cleanup-expired-sessions", "@hourly", "cleanup", "Delete expired user sessions", timedelta(minutes=10)),
    ("cleanup-expired-api-keys", "@daily", "cleanup", "Delete expired API keys", timedelta(minutes=10)),
    (
        "cleanup-old-generations",
        "@weekly",
        "cleanup",
        "Delete AI generations older than 30 days",
        timedelta(minutes=30),
    ),
    (
        "generate-missing-embeddings",
        "@daily",
        "ai",
        "Generate embeddings for entities without them",
        timedelta(hours=1),
    ),
    (
        "generate-missing-chunk-embeddings",
        "@daily",
        "ai",
        "Generate embeddings for document chunks",
        timedelta(hours=1),
    ),
    ("update-analytics", "@hourly", "analytics", "Compute and store platform analytics", timedelta(minutes=10)),
    ("backup-database", "@daily", "analytics", "Backup database to external storage", timedelta(hours=1)),
    ("health-check-services", "*/5 * * * *", "monitoring", "Ping all services and alert if down", timedelta(minutes=2)),
    ("check-rate-limits", "@hourly", "monitoring", "Monitor API rate limit usage", timedelta(minutes=5)),
    ("import-mcp-servers", "0 2 * * *", "imports", "Import MCP servers from registry", timedelta(minutes=30)),
    ("import-public-apis", "0 3 * * *", "imports", "Import public APIs from directories", timedelta(minutes=30)),
    ("import-all-sources", "0 4 * * 0", "imports", "Comprehensive import of all data sources", timedelta(hours=1)),
    ("verify-imported-data", "0 5 * * *", "imports", "Verify data integrity after imports", timedelta(minutes=10)),
]


def default_tasks() -> list[NewTask]:
    """The default tasks as registration requests: enabled, UTC, metadata {description, category}."""
    return [
        NewTask(
            name=name,
            schedule=schedule,
            handler=name,
            enabled=True,
            metadata={"description": description, "category": category},
            timeout=timeout,
        )
        for name, schedule, category, description, timeout in _DEFAULTS
    ]
