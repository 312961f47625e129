"""Writes and reads of the importers: one transaction per import, and what verification looks at."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, func, insert, select

from schedule_grpc.store.db import translate_errors
from schedule_grpc.store.platform import upsert
from schedule_grpc.store.platform_tables import import_runs, mcp_servers, public_apis

TABLES: dict[str, Table] = {"mcp_servers": mcp_servers, "public_apis": public_apis}
CHUNK = 500


def save_import(
    database: Engine, *, source: str, table: str, rows: Sequence[Mapping[str, Any]], now: datetime
) -> tuple[int, int]:
    """Upserts every row and records the run, all in one transaction: a failure writes nothing.

    Returns (inserted, updated). Upserting by name makes the import idempotent.
    """
    target = TABLES[table]
    with translate_errors(), database.begin() as conn:
        existing = set(conn.execute(select(target.c.name)).scalars())
        for start in range(0, len(rows), CHUNK):
            conn.execute(upsert(database, target, rows[start : start + CHUNK], ["name"]))
        inserted = sum(1 for r in rows if r["name"] not in existing)
        conn.execute(
            insert(import_runs).values(
                source=source, imported_at=now, fetched=len(rows), inserted=inserted, updated=len(rows) - inserted
            )
        )
    return inserted, len(rows) - inserted


def recent_runs(database: Engine, source: str, limit: int = 2) -> list[int]:
    """Rows fetched by the latest runs of ``source``, newest first."""
    query = (
        select(import_runs.c.fetched)
        .where(import_runs.c.source == source)
        .order_by(import_runs.c.id.desc())
        .limit(limit)
    )
    with translate_errors(), database.connect() as conn:
        return [int(v) for v in conn.execute(query).scalars()]


def all_rows(database: Engine, table: str) -> list[dict[str, Any]]:
    """Every imported row of ``table``, by name."""
    target = TABLES[table]
    with translate_errors(), database.connect() as conn:
        return [dict(r) for r in conn.execute(select(target).order_by(target.c.name)).mappings()]


def count(database: Engine, table: str) -> int:
    with translate_errors(), database.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(TABLES[table])).scalar_one())
