"""The audit_entries table: the trail of changes made to tasks, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, RowMapping, insert, literal, select, tuple_

from schedule_grpc.domain.audit import AuditAction, AuditEntry, AuditFilter
from schedule_grpc.domain.history import HistoryKey
from schedule_grpc.store.db import translate_errors
from schedule_grpc.store.tables import UtcDateTime
from schedule_grpc.store.tables import audit_entries as a


def _from_row(row: RowMapping) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        action=AuditAction(row["action"]),
        task_name=row["task_name"],
        task_id=row["task_id"],
        actor=row["actor"],
        occurred_at=row["occurred_at"],
        before=row["before"],
        after=row["after"],
        subject_id=row["subject_id"],
    )


def _to_row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "action": entry.action.value,
        "task_name": entry.task_name,
        "task_id": entry.task_id,
        "actor": entry.actor,
        "occurred_at": entry.occurred_at,
        "before": entry.before,
        "after": entry.after,
        "subject_id": entry.subject_id,
    }


class AuditEntryStore:
    """Appends entries and pages through them; entries are never changed."""

    def __init__(self, database: Engine) -> None:
        self._database = database

    def insert(self, entry: AuditEntry) -> None:
        with translate_errors(), self._database.begin() as conn:
            conn.execute(insert(a).values(**_to_row(entry)))

    def page(self, selector: AuditFilter, *, limit: int, after: HistoryKey | None) -> Sequence[AuditEntry]:
        query = select(a).order_by(a.c.occurred_at.desc(), a.c.id.desc()).limit(limit)
        if selector.task_name:
            query = query.where(a.c.task_name == selector.task_name)
        if selector.actor:
            query = query.where(a.c.actor == selector.actor)
        if selector.actions:
            query = query.where(a.c.action.in_(sorted(x.value for x in selector.actions)))
        if selector.start is not None:
            query = query.where(a.c.occurred_at >= selector.start)
        if selector.end is not None:
            query = query.where(a.c.occurred_at < selector.end)
        if after is not None:
            query = query.where(
                tuple_(a.c.occurred_at, a.c.id) < tuple_(literal(after.created_at, UtcDateTime()), literal(after.id))
            )
        with translate_errors(), self._database.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings().all()]
