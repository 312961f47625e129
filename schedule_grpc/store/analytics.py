"""Reads for update-analytics: the service's own tasks and executions, and the snapshot table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, case, func, select

from schedule_grpc.store.db import translate_errors
from schedule_grpc.store.platform import upsert
from schedule_grpc.store.platform_tables import analytics_snapshots
from schedule_grpc.store.tables import scheduled_tasks as t
from schedule_grpc.store.tables import task_executions as e


def task_counts(database: Engine) -> tuple[int, int]:
    """(tasks, enabled tasks)."""
    query = select(func.count(), func.coalesce(func.sum(case((t.c.enabled, 1), else_=0)), 0))
    with translate_errors(), database.connect() as conn:
        total, enabled = conn.execute(query).one()
    return int(total), int(enabled)


def finished_executions(database: Engine, since: datetime, until: datetime) -> list[tuple[str, str, int | None]]:
    """(task name, status, duration ms) of executions that finished in (since, until]."""
    query = (
        select(e.c.task_name, e.c.status, e.c.duration_ms)
        .where(e.c.completed_at > since, e.c.completed_at <= until)
        .order_by(e.c.task_name)
    )
    with translate_errors(), database.connect() as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute(query)]


def save_snapshot(database: Engine, computed_for: datetime, data: dict[str, Any]) -> None:
    """Stores the snapshot of an occurrence; a retry of the same occurrence replaces it."""
    with translate_errors(), database.begin() as conn:
        conn.execute(
            upsert(database, analytics_snapshots, [{"computed_for": computed_for, "data": data}], ["computed_for"])
        )


def snapshots(database: Engine) -> list[tuple[datetime, dict[str, Any]]]:
    """Every snapshot, oldest first."""
    query = select(analytics_snapshots).order_by(analytics_snapshots.c.computed_for)
    with translate_errors(), database.connect() as conn:
        return [(r.computed_for, r.data) for r in conn.execute(query)]
