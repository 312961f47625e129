"""The store's side of ``handlers.data``: the built-in handlers' database operations, on SQLAlchemy.

Stateless, so a ``HandlerContext`` carrying ``HANDLER_DATA`` pickles into a worker process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from schedule_grpc.handlers.data import BackupFailed, EmbeddingColumns
from schedule_grpc.store import analytics, backup, imports, platform


class SqlDatabase:
    """One database opened for one handler run (``handlers.data.Database``)."""

    def __init__(self, database: Engine) -> None:
        self._database = database

    def delete_in_batches(
        self,
        *,
        table_name: str,
        key_column: str,
        time_column: str,
        before: datetime,
        batch_size: int,
        max_batches: int,
    ) -> tuple[int, int]:
        return platform.delete_in_batches(
            self._database,
            table_name=table_name,
            key_column=key_column,
            time_column=time_column,
            before=before,
            batch_size=batch_size,
            max_batches=max_batches,
        )

    def rows_missing_embeddings(
        self, spec: EmbeddingColumns, *, after_id: str | None, limit: int
    ) -> list[tuple[str, str]]:
        return platform.rows_missing_embeddings(self._database, spec, after_id=after_id, limit=limit)

    def store_embeddings(
        self, spec: EmbeddingColumns, vectors: Mapping[str, list[float]], *, model: str, now: datetime
    ) -> int:
        return platform.store_embeddings(self._database, spec, vectors, model=model, now=now)

    def row_counts(self, names: Sequence[str]) -> dict[str, int | None]:
        return platform.row_counts(self._database, names)

    def previous_health(self) -> dict[str, str]:
        return platform.previous_health(self._database)

    def record_health(self, rows: Sequence[Mapping[str, Any]]) -> None:
        platform.record_health(self._database, rows)

    def current_usage(self, table_name: str, now: datetime) -> list[dict[str, Any]]:
        return platform.current_usage(self._database, table_name, now)

    def task_counts(self) -> tuple[int, int]:
        return analytics.task_counts(self._database)

    def finished_executions(self, since: datetime, until: datetime) -> list[tuple[str, str, int | None]]:
        return analytics.finished_executions(self._database, since, until)

    def save_snapshot(self, computed_for: datetime, data: dict[str, Any]) -> None:
        analytics.save_snapshot(self._database, computed_for, data)

    def save_import(
        self, *, source: str, table: str, rows: Sequence[Mapping[str, Any]], now: datetime
    ) -> tuple[int, int]:
        return imports.save_import(self._database, source=source, table=table, rows=rows, now=now)

    def recent_runs(self, source: str, limit: int = 2) -> list[int]:
        return imports.recent_runs(self._database, source, limit)

    def all_rows(self, table: str) -> list[dict[str, Any]]:
        return imports.all_rows(self._database, table)


class SqlHandlerData:
    """Opens databases and makes backups for handlers (``handlers.data.HandlerData``)."""

    @contextmanager
    def open(self, url: str) -> Iterator[SqlDatabase]:
        with platform.connect(url) as database:
            yield SqlDatabase(database)

    def backup(self, url: str, directory: Path, stem: str, timeout_s: float) -> backup.Backup:
        try:
            return backup.make_backup(url, directory, stem, timeout_s)
        except backup.BackupError as error:
            raise BackupFailed(str(error)) from error

    def prune_backups(self, directory: Path, prefix: str, keep: int) -> list[str]:
        return backup.prune(directory, prefix, keep)

    def kind(self, url: str) -> str:
        return backup.kind(url)


HANDLER_DATA = SqlHandlerData()
