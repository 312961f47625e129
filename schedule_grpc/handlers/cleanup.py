"""Cleanup handlers: delete expired or old rows of the platform database in bounded batches.

Metadata (all optional): ``table``, ``keyColumn`` and ``timeColumn`` (where the rows are),
``batchSize`` (rows per transaction, default 1000), ``maxBatches`` (default 1000, so one run is
bounded), and for age-based cleanup ``maxAgeDays``. "Now" is the occurrence's scheduled instant, so a
retry removes the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from schedule_grpc.domain.models import JSON
from schedule_grpc.handlers import common, tables
from schedule_grpc.handlers.base import HandlerContext

DEFAULT_BATCH = 1000
DEFAULT_MAX_BATCHES = 1000


class CleanupHandler:
    """Deletes rows whose time column is past (``max_age_days`` None) or older than an age."""

    category = "cleanup"

    def __init__(
        self,
        *,
        name: str,
        description: str,
        database_url: str,
        table: str,
        time_column: str,
        result_key: str,
        max_age_days: int | None = None,
        allowed_tables: frozenset[str] | None = None,
    ) -> None:
        self.name = name
        self.database_url = database_url
        self.table = table
        self.time_column = time_column
        self.result_key = result_key
        self.max_age_days = max_age_days
        self.allowed_tables = allowed_tables if allowed_tables is not None else frozenset({table})
        age = f"maxAgeDays (default {max_age_days}), " if max_age_days is not None else ""
        self.description = (
            f"{description} Metadata: table (default {table}), keyColumn (default id), timeColumn "
            f"(default {time_column}), {age}batchSize (default {DEFAULT_BATCH}), maxBatches (default "
            f"{DEFAULT_MAX_BATCHES})."
        )

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        self._options(metadata)

    def _options(self, metadata: Mapping[str, JSON]) -> dict[str, object]:
        options: dict[str, object] = {
            "table_name": tables.table(metadata, "table", self.table, self.allowed_tables),
            "key_column": common.identifier(metadata, "keyColumn", "id"),
            "time_column": common.identifier(metadata, "timeColumn", self.time_column),
            "batch_size": common.integer(metadata, "batchSize", DEFAULT_BATCH, minimum=1, maximum=100_000),
            "max_batches": common.integer(metadata, "maxBatches", DEFAULT_MAX_BATCHES, minimum=1, maximum=1_000_000),
        }
        if self.max_age_days is not None:
            options["max_age_days"] = common.integer(
                metadata, "maxAgeDays", self.max_age_days, minimum=0, maximum=36_500
            )
        return options

    def run(self, context: HandlerContext) -> JSON:
        options = tables.at_execution(lambda: self._options(context.metadata))
        max_age_days = options.pop("max_age_days", None)
        before = context.scheduled_for
        if isinstance(max_age_days, int):
            before -= timedelta(days=max_age_days)
        with context.data.open(self.database_url) as database:
            deleted, batches = database.delete_in_batches(before=before, **options)  # type: ignore[arg-type]
        return {
            self.result_key: deleted,
            "batches": batches,
            "table": options["table_name"],
            "before": before.isoformat().replace("+00:00", "Z"),
            # max_batches reached with full batches: more rows may remain for the next run
            "complete": deleted < batches * int(options["batch_size"]),  # type: ignore[call-overload]
        }


def cleanup_handlers(database_url: str, allowed: Mapping[str, frozenset[str]] | None = None) -> list[CleanupHandler]:
    """The seed's three cleanup handlers; ``allowed`` overrides the tables each may touch (default: its own)."""
    handlers = [
        CleanupHandler(
            name="cleanup-expired-sessions",
            description="Deletes expired user sessions.",
            database_url=database_url,
            table="sessions",
            time_column="expires_at",
            result_key="deletedSessions",
        ),
        CleanupHandler(
            name="cleanup-expired-api-keys",
            description="Deletes expired API keys (keys without an expiry are kept).",
            database_url=database_url,
            table="api_keys",
            time_column="expires_at",
            result_key="deletedApiKeys",
        ),
        CleanupHandler(
            name="cleanup-old-generations",
            description="Deletes AI generations older than maxAgeDays.",
            database_url=database_url,
            table="generations",
            time_column="created_at",
            result_key="deletedGenerations",
            max_age_days=30,
        ),
    ]
    for handler in handlers:
        handler.allowed_tables = tables.allowed_tables(handler.name, [handler.table], allowed or {})
    return handlers
