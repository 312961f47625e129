"""The executions table: the ledger of every run, newest first by id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, RowMapping, insert, literal, select, tuple_, update

from schedule_grpc.history import HistoryFilter, HistoryKey
from schedule_grpc.models import ErrorCategory, Execution, ExecutionStatus, Outcome, Trigger
from schedule_grpc.store.db import translate_errors
from schedule_grpc.store.tables import UtcDateTime
from schedule_grpc.store.tables import task_executions as e

_FIELDS = [c.name for c in e.columns]


def _from_row(row: RowMapping) -> Execution:
    values: dict[str, Any] = dict(row)
    values["trigger"] = Trigger(values["trigger"])
    values["status"] = ExecutionStatus(values["status"])
    if values["error_category"] is not None:
        values["error_category"] = ErrorCategory(values["error_category"])
    return Execution(**values)


def _to_row(execution: Execution) -> dict[str, Any]:
    return {name: getattr(execution, name) for name in _FIELDS}


class ExecutionStore:
    """Reads and writes execution rows."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def insert(self, execution: Execution) -> Execution:
        with translate_errors(), self._engine.begin() as conn:
            conn.execute(insert(e).values(_to_row(execution)))
        return execution

    def get(self, execution_id: str) -> Execution | None:
        with translate_errors(), self._engine.connect() as conn:
            row = conn.execute(select(e).where(e.c.id == execution_id)).mappings().first()
        return _from_row(row) if row else None

    def finish(self, execution_id: str, outcome: Outcome) -> Execution | None:
        """Records how a running execution ended; None if it is no longer running (cancelled, deleted)."""
        with translate_errors(), self._engine.begin() as conn:
            started_at = conn.execute(select(e.c.started_at).where(e.c.id == execution_id)).scalar()
            duration_ms = (
                None if started_at is None else round((outcome.completed_at - started_at).total_seconds() * 1000)
            )
            row = (
                conn.execute(
                    update(e)
                    .where(e.c.id == execution_id, e.c.status == ExecutionStatus.RUNNING.value)
                    .values(
                        status=outcome.status.value,
                        completed_at=outcome.completed_at,
                        result=outcome.result,
                        error=outcome.error,
                        error_category=outcome.error_category.value if outcome.error_category else None,
                        traceback=outcome.traceback,
                        duration_ms=duration_ms,
                        lease_owner=None,
                        lease_expires_at=None,
                    )
                    .returning(*e.c)
                )
                .mappings()
                .first()
            )
        return _from_row(row) if row else None

    def history(self, task_id: str, *, limit: int, before_id: str | None = None) -> Sequence[Execution]:
        """A task's executions, newest first, older than ``before_id`` when given."""
        query = select(e).where(e.c.task_id == task_id).order_by(e.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(e.c.id < before_id)
        with translate_errors(), self._engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings()]

    def recent(self, *, limit: int, before_id: str | None = None) -> Sequence[Execution]:
        """Executions of all tasks, newest first, older than ``before_id`` when given."""
        query = select(e).order_by(e.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(e.c.id < before_id)
        with translate_errors(), self._engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings()]

    def page(
        self, selector: HistoryFilter, *, limit: int, task_id: str | None = None, after: HistoryKey | None = None
    ) -> Sequence[Execution]:
        """Executions matching ``selector`` (of one task when ``task_id``), newest first by (created_at, id),
        older than ``after`` when given. Each filter narrows an index range; see migration 0007."""
        query = select(e).order_by(e.c.created_at.desc(), e.c.id.desc()).limit(limit)
        if task_id is not None:
            query = query.where(e.c.task_id == task_id)
        if selector.task_names:
            query = query.where(e.c.task_name.in_(sorted(selector.task_names)))
        if selector.statuses:
            query = query.where(e.c.status.in_(sorted(s.value for s in selector.statuses)))
        if selector.start is not None:
            query = query.where(e.c.created_at >= selector.start)
        if selector.end is not None:
            query = query.where(e.c.created_at < selector.end)
        if after is not None:
            query = query.where(
                tuple_(e.c.created_at, e.c.id) < tuple_(literal(after.created_at, UtcDateTime()), literal(after.id))
            )
        with translate_errors(), self._engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings()]
