"""The executions table: the ledger of every run, newest first by id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, RowMapping, insert, literal, select, tuple_, update

from schedule_grpc.domain.history import HistoryFilter, HistoryKey
from schedule_grpc.domain.models import ErrorCategory, Execution, ExecutionStatus, Outcome, Trigger
from schedule_grpc.store.db import autocommit, translate_errors
from schedule_grpc.store.tables import UtcDateTime
from schedule_grpc.store.tables import scheduled_tasks as t
from schedule_grpc.store.tables import task_executions as e

_FIELDS = [c.name for c in e.columns]


_STATUS = {s.value: s for s in ExecutionStatus}
_TRIGGER = {t.value: t for t in Trigger}
_CATEGORY = {c.value: c for c in ErrorCategory}


def _from_row(row: RowMapping) -> Execution:
    # Lookups by dict rather than Enum(value): history pages turn many rows per call.
    values: dict[str, Any] = dict(row)
    values["trigger"] = _TRIGGER[values["trigger"]]
    values["status"] = _STATUS[values["status"]]
    category = values["error_category"]
    values["error_category"] = None if category is None else _CATEGORY[category]
    return Execution(**values)


def _to_row(execution: Execution) -> dict[str, Any]:
    return {name: getattr(execution, name) for name in _FIELDS}


class ExecutionStore:
    """Reads and writes execution rows."""

    def __init__(self, database: Engine) -> None:
        self._database = database
        self._reads = autocommit(database)

    def insert(self, execution: Execution) -> Execution:
        with translate_errors(), self._database.begin() as conn:
            conn.execute(insert(e).values(_to_row(execution)))
        return execution

    def get(self, execution_id: str) -> Execution | None:
        with translate_errors(), self._reads.connect() as conn:
            row = conn.execute(select(e).where(e.c.id == execution_id)).mappings().first()
        return _from_row(row) if row else None

    def finish(self, execution_id: str, outcome: Outcome) -> Execution | None:
        """Records how a running execution ended; None if it is no longer running (cancelled, deleted)."""
        with translate_errors(), self._database.begin() as conn:
            started_at = conn.execute(select(e.c.started_at).where(e.c.id == execution_id)).scalar()
            row = (
                conn.execute(
                    update(e)
                    .where(e.c.id == execution_id, e.c.status == ExecutionStatus.RUNNING.value)
                    .values(finished_values(outcome, started_at))
                    .returning(*e.c)
                )
                .mappings()
                .first()
            )
        return _from_row(row) if row else None

    def history(self, task_name: str, *, limit: int, before_id: str | None = None) -> Sequence[Execution]:
        """A task's executions, newest first, older than ``before_id`` when given (one round trip)."""
        task_id = select(t.c.id).where(t.c.name == task_name).scalar_subquery()
        query = select(e).where(e.c.task_id == task_id).order_by(e.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(e.c.id < before_id)
        with translate_errors(), self._reads.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings().all()]

    def recent(self, *, limit: int, before_id: str | None = None) -> Sequence[Execution]:
        """Executions of all tasks, newest first, older than ``before_id`` when given."""
        query = select(e).order_by(e.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(e.c.id < before_id)
        with translate_errors(), self._reads.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings().all()]

    def page(
        self, selector: HistoryFilter, *, limit: int, task_name: str | None = None, after: HistoryKey | None = None
    ) -> Sequence[Execution]:
        """Executions matching ``selector`` (of one task when ``task_name``), newest first by (created_at, id),
        older than ``after`` when given. Each filter narrows an index range; see migration 0007."""
        query = select(e).order_by(e.c.created_at.desc(), e.c.id.desc()).limit(limit)
        if task_name is not None:  # by name: the executions of a deleted task stay readable (migration 0009)
            query = query.where(e.c.task_name == task_name)
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
        with translate_errors(), self._reads.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings().all()]


def finished_values(outcome: Outcome, started_at: datetime | None) -> dict[str, Any]:
    """The columns an execution's row takes when it ends with ``outcome`` (its lease released)."""
    return {
        "status": outcome.status.value,
        "completed_at": outcome.completed_at,
        "result": outcome.result,
        "error": outcome.error,
        "error_category": outcome.error_category.value if outcome.error_category else None,
        "traceback": outcome.traceback,
        "duration_ms": None
        if started_at is None
        else round((outcome.completed_at - started_at).total_seconds() * 1000),
        "lease_owner": None,
        "lease_expires_at": None,
    }


def ms(delta: timedelta) -> int:
    """A duration in whole milliseconds, as the ``duration_ms`` column keeps it."""
    return round(delta.total_seconds() * 1000)
