"""The execution_events table: reading it in order, and trimming it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, RowMapping, delete, literal, select, text, tuple_

from schedule_grpc.domain.events import EventFilter, EventKind, ExecutionEvent, Position
from schedule_grpc.domain.models import ErrorCategory, ExecutionStatus, Trigger
from schedule_grpc.store.db import translate_errors
from schedule_grpc.store.tables import execution_events as ev
from schedule_grpc.store.tables import scheduled_tasks as tasks

# Postgres channel the event triggers NOTIFY on (empty payload: a wake-up call).
EVENTS_CHANNEL = "schedule_execution_events"


def _from_row(row: RowMapping) -> ExecutionEvent:
    return ExecutionEvent(
        position=Position(row["tx"], row["id"]),
        kind=EventKind(row["kind"]),
        execution_id=row["execution_id"],
        task_id=row["task_id"],
        task_name=row["task_name"],
        status=ExecutionStatus(row["status"]),
        trigger=Trigger(row["trigger"]) if row["trigger"] else None,
        attempt=row["attempt"],
        occurred_at=row["occurred_at"],
        scheduled_for=row["scheduled_for"],
        started_at=row["started_at"],
        duration_ms=row["duration_ms"],
        error_category=ErrorCategory(row["error_category"]) if row["error_category"] else None,
    )


class EventStore:
    """Reads events in (tx, id) order without ever skipping one that commits later."""

    def __init__(self, database: Engine) -> None:
        self._database = database
        self._postgres = database.dialect.name == "postgresql"

    @property
    def notifies(self) -> bool:
        """Whether writers announce events (Postgres NOTIFY); otherwise readers poll."""
        return self._postgres

    def _settled(self) -> ColumnElement[bool]:
        """Events of transactions that can no longer commit behind the reader (Postgres)."""
        if not self._postgres:
            return literal(True)
        return ev.c.tx < text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")

    def head(self) -> Position:
        """The position of the newest settled event; (0, 0) when there is none."""
        query = select(ev.c.tx, ev.c.id).where(self._settled()).order_by(ev.c.tx.desc(), ev.c.id.desc()).limit(1)
        with translate_errors(), self._database.connect() as conn:
            row = conn.execute(query).first()
        return Position(row.tx, row.id) if row else Position()

    def unsettled_after(self, position: Position) -> bool:
        """Whether events past ``position`` are committed but not yet readable (an older transaction
        anywhere on the Postgres cluster is still running; readers retry shortly)."""
        if not self._postgres:
            return False
        query = select(ev.c.id).where(tuple_(ev.c.tx, ev.c.id) > tuple_(literal(position.tx), literal(position.id)))
        with translate_errors(), self._database.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def exists(self, position: Position) -> bool:
        """Whether the event at ``position`` is still stored (retention removes the oldest)."""
        query = select(ev.c.id).where(ev.c.tx == position.tx, ev.c.id == position.id)
        with translate_errors(), self._database.connect() as conn:
            return conn.execute(query).first() is not None

    def read(self, after: Position, *, until: Position, selector: EventFilter, limit: int) -> Sequence[ExecutionEvent]:
        """Up to ``limit`` events after ``after`` and not after ``until`` that match ``selector``, in order."""
        key = tuple_(ev.c.tx, ev.c.id)
        query = (
            select(ev)
            .where(key > tuple_(literal(after.tx), literal(after.id)))
            .where(key <= tuple_(literal(until.tx), literal(until.id)))
            .order_by(ev.c.tx, ev.c.id)
            .limit(limit)
        )
        conditions: list[Any] = []
        if selector.task_names:
            conditions.append(ev.c.task_name.in_(sorted(selector.task_names)))
        if selector.kinds:
            conditions.append(ev.c.kind.in_(sorted(k.value for k in selector.kinds)))
        if selector.statuses:
            conditions.append(ev.c.status.in_(sorted(s.value for s in selector.statuses)))
        if selector.owner is not None:
            owned = select(tasks.c.id).where(tasks.c.owner == selector.owner)
            conditions.append(ev.c.task_id.in_(owned.scalar_subquery()))
        query = query.where(*conditions)
        with translate_errors(), self._database.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings()]

    def delete_before(self, cutoff: datetime, *, batch: int) -> int:
        """Deletes up to ``batch`` of the oldest events that occurred before ``cutoff``; how many."""
        oldest = select(ev.c.id).where(ev.c.occurred_at < cutoff).order_by(ev.c.occurred_at).limit(batch)
        with translate_errors(), self._database.begin() as conn:
            return conn.execute(delete(ev).where(ev.c.id.in_(oldest.scalar_subquery()))).rowcount
