"""Queries of the built-in handlers on the platform database: bounded deletes, embeddings, state.

Table and column names may come from a task's metadata, so handlers pass them as validated
identifiers and every statement is built with SQLAlchemy Core (names quoted, values bound).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnClause, Engine, TableClause, case, column, delete, func, inspect, select, table, update
from sqlalchemy.dialects import postgresql, sqlite

from schedule_grpc.handlers.data import EmbeddingColumns
from schedule_grpc.store.db import make_engine, translate_errors
from schedule_grpc.store.platform_tables import VectorType, service_health
from schedule_grpc.store.tables import UtcDateTime


def _table(name: str, *columns: ColumnClause[Any]) -> TableClause:
    schema, _, bare = name.rpartition(".")
    return table(bare, *columns, schema=schema or None)


@contextlib.contextmanager
def connect(url: str) -> Iterator[Engine]:
    """A small database handle (connection pool) for one handler run, disposed afterwards (handlers keep no state)."""
    database = make_engine(url, pool_size=2)
    try:
        yield database
    finally:
        database.dispose()


def upsert(database: Engine, target: Any, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> Any:
    """An INSERT ... ON CONFLICT (keys) DO UPDATE statement for ``rows`` on Postgres or SQLite."""
    dialect = postgresql if database.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(target).values(list(rows))
    changed = {c.name: statement.excluded[c.name] for c in target.columns if c.name not in keys}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=changed)


# --- cleanup ----------------------------------------------------------------------------------


def delete_in_batches(
    database: Engine,
    *,
    table_name: str,
    key_column: str,
    time_column: str,
    before: datetime,
    batch_size: int,
    max_batches: int,
) -> tuple[int, int]:
    """Deletes rows whose ``time_column`` is before ``before``, ``batch_size`` rows per transaction.

    Each batch is its own short transaction, so no lock is held for long and a failure keeps what
    was deleted so far (deletion is idempotent). Returns (rows deleted, batches run).
    """
    key: ColumnClause[Any] = column(key_column)
    when = column(time_column, UtcDateTime)
    target = _table(table_name, key, when)
    doomed = select(key).where(when.is_not(None), when < before).limit(batch_size).scalar_subquery()
    deleted = batches = 0
    while batches < max_batches:
        with translate_errors(), database.begin() as conn:
            count = conn.execute(delete(target).where(key.in_(doomed))).rowcount
        batches += 1
        deleted += count
        if count < batch_size:
            break
    return deleted, batches


# --- embeddings -------------------------------------------------------------------------------


def _embedding_clause(spec: EmbeddingColumns) -> tuple[TableClause, dict[str, ColumnClause[Any]]]:
    """The table and columns where ``spec``'s rows keep their text and embedding."""
    cols: dict[str, ColumnClause[Any]] = {
        "id": column(spec.id),
        "text": column(spec.text),
        "embedding": column(spec.embedding, VectorType),
        "model": column(spec.model),
        "embedded_at": column(spec.embedded_at, UtcDateTime),
    }
    return _table(spec.table, *cols.values()), cols


def rows_missing_embeddings(
    database: Engine, spec: EmbeddingColumns, *, after_id: str | None, limit: int
) -> list[tuple[str, str]]:
    """(id, text) of rows with text and no embedding, in id order, after ``after_id``."""
    target, c = _embedding_clause(spec)
    query = (
        select(c["id"], c["text"])
        .select_from(target)
        .where(c["embedding"].is_(None), c["text"].is_not(None), c["text"] != "")
        .order_by(c["id"])
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(c["id"] > after_id)
    with translate_errors(), database.connect() as conn:
        return [(str(r[0]), str(r[1])) for r in conn.execute(query)]


def store_embeddings(
    database: Engine, spec: EmbeddingColumns, vectors: Mapping[str, list[float]], *, model: str, now: datetime
) -> int:
    """Stores each row's vector, only where the row still has none; returns the rows written."""
    target, c = _embedding_clause(spec)
    written = 0
    with translate_errors(), database.begin() as conn:
        for row_id, vector in vectors.items():
            written += conn.execute(
                update(target)
                .where(c["id"] == row_id, c["embedding"].is_(None))
                .values({spec.embedding: vector, spec.model: model, spec.embedded_at: now})
            ).rowcount
    return written


# --- analytics ----------------------------------------------------------------------------------


def row_counts(database: Engine, names: Sequence[str]) -> dict[str, int | None]:
    """Rows in each named table; None for a table that does not exist."""
    counts: dict[str, int | None] = {}
    with translate_errors(), database.connect() as conn:
        existing = set(inspect(conn).get_table_names())
        for name in names:
            bare = name.rpartition(".")[2]
            counts[name] = (
                int(conn.execute(select(func.count()).select_from(_table(name))).scalar_one())
                if bare in existing or "." in name
                else None
            )
    return counts


# --- health -------------------------------------------------------------------------------------


def previous_health(database: Engine) -> dict[str, str]:
    """Last recorded status of each service by name."""
    with translate_errors(), database.connect() as conn:
        return {r.name: r.status for r in conn.execute(select(service_health.c.name, service_health.c.status))}


def record_health(database: Engine, rows: Sequence[Mapping[str, Any]]) -> None:
    """Upserts each service's latest probe; ``changed_at`` moves only when the status changed."""
    if not rows:
        return
    dialect = postgresql if database.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(service_health).values(list(rows))
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["name"],
        set_={
            "target": excluded.target,
            "status": excluded.status,
            "latency_ms": excluded.latency_ms,
            "detail": excluded.detail,
            "checked_at": excluded.checked_at,
            # the instant of the last change of status: kept while the status stays the same
            "changed_at": case(
                (service_health.c.status == excluded.status, service_health.c.changed_at), else_=excluded.changed_at
            ),
        },
    )
    with translate_errors(), database.begin() as conn:
        conn.execute(statement)


# --- rate limits --------------------------------------------------------------------------------


def current_usage(database: Engine, table_name: str, now: datetime) -> list[dict[str, Any]]:
    """Usage rows whose window contains ``now``: key, used, limit."""
    key: ColumnClause[Any] = column("key")
    used: ColumnClause[Any] = column("used")
    limit: ColumnClause[Any] = column("limit")
    start, end = column("window_start", UtcDateTime), column("window_end", UtcDateTime)
    target = _table(table_name, key, used, limit, start, end)
    query = select(key, used, limit).select_from(target).where(start <= now, end > now).order_by(key)
    with translate_errors(), database.connect() as conn:
        return [{"key": r[0], "used": int(r[1]), "limit": int(r[2])} for r in conn.execute(query)]
