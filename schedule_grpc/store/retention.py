"""Deleting old history in bounded batches: one short transaction per batch, oldest rows first."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select

from schedule_grpc.store.db import translate_errors
from schedule_grpc.store.tables import dead_letters as dl
from schedule_grpc.store.tables import scheduled_tasks as t
from schedule_grpc.store.tables import task_executions as e

# Executions still in the queue or running are never deleted, however old.
_LIVE = ("pending", "running")


class RetentionStore:
    """Deletes finished executions and dead letters older than a cutoff."""

    def __init__(self, database: Engine) -> None:
        self._database = database

    def task_retentions(self) -> dict[str, timedelta]:
        """Tasks with their own history retention, by task id."""
        query = select(t.c.id, t.c.history_retention_s).where(t.c.history_retention_s.is_not(None))
        with translate_errors(), self._database.connect() as conn:
            return {row.id: timedelta(seconds=row.history_retention_s) for row in conn.execute(query)}

    def delete_executions(
        self,
        cutoff: datetime,
        *,
        batch: int,
        task_id: str | None = None,
        except_tasks: Collection[str] = (),
    ) -> int:
        """Deletes up to ``batch`` finished executions created before ``cutoff``; returns how many."""
        oldest = (
            select(e.c.id)
            .where(e.c.created_at < cutoff, e.c.status.not_in(_LIVE))
            .order_by(e.c.created_at)
            .limit(batch)
        )
        if task_id is not None:
            oldest = oldest.where(e.c.task_id == task_id)
        if except_tasks:
            oldest = oldest.where(e.c.task_id.not_in(sorted(except_tasks)))
        with translate_errors(), self._database.begin() as conn:
            return conn.execute(delete(e).where(e.c.id.in_(oldest.scalar_subquery()))).rowcount

    def delete_dead_letters(self, cutoff: datetime, *, batch: int) -> int:
        """Deletes up to ``batch`` dead-letter entries created before ``cutoff``; returns how many."""
        oldest = select(dl.c.id).where(dl.c.created_at < cutoff).order_by(dl.c.created_at).limit(batch)
        with translate_errors(), self._database.begin() as conn:
            return conn.execute(delete(dl).where(dl.c.id.in_(oldest.scalar_subquery()))).rowcount
