"""update-analytics and backup-database.

update-analytics: task and execution counts, success rates and duration percentiles per task over
the last hour and day (from the service's own tables), and row counts of the platform tables, into
``analytics_snapshots`` keyed by the occurrence's scheduled instant. Metadata: ``tables`` (the
platform tables to count; default the documented ones).

backup-database: backs up the platform database (``database: "service"`` backs up the service's
own) into SCHEDULE_BACKUP_DIR as ``<prefix>-<UTC instant>.dump|.sqlite3`` with a ``.sha256`` file,
and keeps the newest SCHEDULE_BACKUP_RETENTION (metadata ``keep``). Metadata: ``prefix``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers import common, tables
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed
from schedule_grpc.handlers.data import PLATFORM_TABLES, BackupFailed

WINDOWS = {"lastHour": timedelta(hours=1), "lastDay": timedelta(days=1)}
PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def percentile(sorted_values: Sequence[int], p: float) -> int | None:
    """Nearest-rank percentile of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(math.ceil(p / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def summarize(rows: Sequence[tuple[str, str, int | None]]) -> dict[str, JSON]:
    """Counts, success rate and duration percentiles of executions, overall and per task."""

    def stats(group: Sequence[tuple[str, str, int | None]]) -> dict[str, JSON]:
        success = sum(1 for _, status, _ in group if status == "success")
        failed = sum(1 for _, status, _ in group if status == "failed")
        durations = sorted(d for _, _, d in group if d is not None)
        judged = success + failed
        return {
            "total": len(group),
            "success": success,
            "failed": failed,
            "successRate": round(success / judged, 4) if judged else None,
            "durationMs": {f"p{p}": percentile(durations, p) for p in (50, 95, 99)},
        }

    by_task: dict[str, list[tuple[str, str, int | None]]] = defaultdict(list)
    for row in rows:
        by_task[row[0]].append(row)
    return {**stats(rows), "byTask": {name: stats(group) for name, group in sorted(by_task.items())}}


class UpdateAnalyticsHandler:
    name = "update-analytics"
    category = "analytics"
    description = (
        "Computes platform analytics (tasks, executions, success rates and duration percentiles per task over "
        "the last hour and day, platform table sizes) into analytics_snapshots. Metadata: tables."
    )

    def __init__(
        self, *, service_database_url: str, platform_database_url: str, allowed_tables: frozenset[str] | None = None
    ) -> None:
        self.service_database_url = service_database_url
        self.platform_database_url = platform_database_url
        self.allowed_tables = allowed_tables if allowed_tables is not None else frozenset(PLATFORM_TABLES)

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        self._tables(metadata)

    def _tables(self, metadata: Mapping[str, JSON]) -> list[str]:
        value = metadata.get("tables", sorted(self.allowed_tables))
        if not isinstance(value, list) or not all(
            isinstance(v, str) and common.is_identifier(v, qualified=True) for v in value
        ):
            raise InvalidArgument("metadata.tables", "must be a list of table names")
        for index, name in enumerate(value):
            tables.check(str(name), f"metadata.tables[{index}]", self.allowed_tables)
        return [str(v) for v in value]

    def run(self, context: HandlerContext) -> JSON:
        names = tables.at_execution(lambda: self._tables(context.metadata))
        now = context.scheduled_for
        with context.data.open(self.service_database_url) as service:
            total, enabled = service.task_counts()
            executions = {
                label: summarize(service.finished_executions(now - span, now)) for label, span in WINDOWS.items()
            }
        with context.data.open(self.platform_database_url) as platform:
            counts = platform.row_counts(names)
            snapshot: dict[str, JSON] = {
                "computedFor": _iso(now),
                "tasks": {"total": total, "enabled": enabled},
                "executions": executions,
                "tables": counts,
            }
            platform.save_snapshot(now, snapshot)
        return snapshot


class BackupDatabaseHandler:
    name = "backup-database"
    category = "analytics"
    description = (
        "Backs up the platform database (pg_dump custom format, or SQLite's online backup) into "
        "SCHEDULE_BACKUP_DIR with a .sha256 checksum, keeping the newest SCHEDULE_BACKUP_RETENTION. "
        "Metadata: database (platform or service), prefix, keep."
    )

    def __init__(
        self, *, service_database_url: str, platform_database_url: str, directory: str, retention: int
    ) -> None:
        self.service_database_url = service_database_url
        self.platform_database_url = platform_database_url
        self.directory = directory
        self.retention = retention

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        self._options(metadata)

    def _options(self, metadata: Mapping[str, JSON]) -> tuple[str, str, int]:
        which = metadata.get("database", "platform")
        if which not in ("platform", "service"):
            raise InvalidArgument("metadata.database", "must be platform or service")
        prefix = metadata.get("prefix", "backup")
        if not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix):
            raise InvalidArgument(
                "metadata.prefix", "must be 1-64 letters, digits, _ . -, starting with a letter or digit"
            )
        keep = common.integer(metadata, "keep", self.retention, minimum=1, maximum=10_000)
        url = self.platform_database_url if which == "platform" else self.service_database_url
        return url, prefix, keep

    def run(self, context: HandlerContext) -> JSON:
        url, prefix, keep = self._options(context.metadata)
        directory = Path(self.directory)
        stem = f"{prefix}-{context.scheduled_for.strftime('%Y%m%dT%H%M%S')}Z"
        try:
            made = context.data.backup(url, directory, stem, context.timeout.total_seconds())
        except BackupFailed as error:
            raise HandlerFailed(str(error), ErrorCategory.RESOURCE) from error
        except OSError as error:
            raise HandlerFailed(f"cannot write the backup in {directory}: {error}", ErrorCategory.RESOURCE) from error
        deleted = context.data.prune_backups(directory, prefix, keep)
        return {
            "file": str(made.path),
            "bytes": made.bytes,
            "sha256": made.sha256,
            "format": "pg_dump custom" if context.data.kind(url) == "postgresql" else "sqlite",
            "deletedBackups": deleted,
            "kept": keep,
        }


def _iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")
