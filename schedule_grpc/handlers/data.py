"""How the built-in handlers reach databases: the interface the store implements.

Handlers never import the store. The executor puts a ``HandlerData`` in each ``HandlerContext``
(``context.data``); a handler opens the database it was configured with (``data.open(url)``, one
small connection pool for one run, closed afterwards) and calls the operations below on it. The
implementation is stateless, so a context pickles into a worker process with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class EmbeddingColumns:
    """Where a family of rows keeps its text and its embedding."""

    table: str
    id: str
    text: str
    embedding: str
    model: str
    embedded_at: str


class BackupFailed(Exception):
    """The backup could not be made."""


class BackupFile(Protocol):
    """A backup written to disk."""

    @property
    def path(self) -> Path: ...
    @property
    def bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...


class Database(Protocol):
    """One database opened for one handler run."""

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
        """Deletes rows whose ``time_column`` is before ``before``, one short transaction per batch.

        Returns (rows deleted, batches run)."""
        ...

    def rows_missing_embeddings(
        self, spec: EmbeddingColumns, *, after_id: str | None, limit: int
    ) -> list[tuple[str, str]]:
        """(id, text) of rows with text and no embedding, in id order, after ``after_id``."""
        ...

    def store_embeddings(
        self, spec: EmbeddingColumns, vectors: Mapping[str, list[float]], *, model: str, now: datetime
    ) -> int:
        """Stores each row's vector where the row still has none; returns the rows written."""
        ...

    def row_counts(self, names: Sequence[str]) -> dict[str, int | None]:
        """Rows in each named table; None for a table that does not exist."""
        ...

    def previous_health(self) -> dict[str, str]:
        """Last recorded status of each probed service by name."""
        ...

    def record_health(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Upserts each service's latest probe; ``changed_at`` moves only when the status changed."""
        ...

    def current_usage(self, table_name: str, now: datetime) -> list[dict[str, Any]]:
        """Rate-limit usage rows whose window contains ``now``: key, used, limit."""
        ...

    def task_counts(self) -> tuple[int, int]:
        """(tasks, enabled tasks) of the service's own database."""
        ...

    def finished_executions(self, since: datetime, until: datetime) -> list[tuple[str, str, int | None]]:
        """(task name, status, duration ms) of executions that finished in (since, until]."""
        ...

    def save_snapshot(self, computed_for: datetime, data: dict[str, Any]) -> None:
        """Stores the analytics snapshot of an occurrence; a retry of the same occurrence replaces it."""
        ...

    def save_import(
        self, *, source: str, table: str, rows: Sequence[Mapping[str, Any]], now: datetime
    ) -> tuple[int, int]:
        """Upserts every imported row and records the run in one transaction; (inserted, updated)."""
        ...

    def recent_runs(self, source: str, limit: int = 2) -> list[int]:
        """Rows fetched by the latest import runs of ``source``, newest first."""
        ...

    def all_rows(self, table: str) -> list[dict[str, Any]]:
        """Every imported row of ``table``, by name."""
        ...


class HandlerData(Protocol):
    """Opens databases and makes backups for handlers."""

    def open(self, url: str) -> AbstractContextManager[Database]:
        """``url`` opened for one run; closed when the block ends."""
        ...

    def backup(self, url: str, directory: Path, stem: str, timeout_s: float) -> BackupFile:
        """A backup of ``url`` in ``directory`` with a checksum file; raises BackupFailed."""
        ...

    def prune_backups(self, directory: Path, prefix: str, keep: int) -> list[str]:
        """Deletes all but the newest ``keep`` backups named ``prefix-*``; returns the names deleted."""
        ...

    def kind(self, url: str) -> str:
        """``postgresql`` or ``sqlite``."""
        ...


PLATFORM_TABLES = (
    "sessions",
    "api_keys",
    "generations",
    "entities",
    "document_chunks",
    "analytics_snapshots",
    "service_health",
    "rate_limit_usage",
    "mcp_servers",
    "public_apis",
    "import_runs",
)
"""The platform tables the service creates (store/platform_tables.py; a test keeps the two in step)."""
