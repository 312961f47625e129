"""The dead-letter table: executions whose last retry failed, until redriven or discarded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, RowMapping, delete, insert, select

from schedule_grpc.domain import lifecycle
from schedule_grpc.domain.models import DeadLetter, ErrorCategory, Execution
from schedule_grpc.store.db import translate_errors
from schedule_grpc.store.executions import _to_row as _execution_row
from schedule_grpc.store.queue import QueueStore
from schedule_grpc.store.tables import dead_letters as d
from schedule_grpc.store.tables import task_executions as e


def _from_row(row: RowMapping) -> DeadLetter:
    category = row["error_category"]
    return DeadLetter(
        id=row["id"],
        execution_id=row["execution_id"],
        task_id=row["task_id"],
        task_name=row["task_name"],
        scheduled_for=row["scheduled_for"],
        attempts=row["attempts"],
        error=row["error"],
        error_category=ErrorCategory(category) if category else None,
        created_at=row["created_at"],
    )


class DeadLetterStore:
    """Lists, redrives and discards dead letters."""

    def __init__(self, database: Engine, queue: QueueStore) -> None:
        self._database = database
        self._queue = queue

    def list(
        self, *, limit: int, before_id: str | None = None, task_id: str | None = None, task_name: str | None = None
    ) -> Sequence[DeadLetter]:
        """Dead letters, newest first, older than ``before_id`` and of one task (by id or name) when given."""
        query = select(d).order_by(d.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(d.c.id < before_id)
        if task_id is not None:
            query = query.where(d.c.task_id == task_id)
        if task_name is not None:
            query = query.where(d.c.task_name == task_name)
        with translate_errors(), self._database.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings()]

    def get(self, letter_id: str) -> DeadLetter | None:
        with translate_errors(), self._database.connect() as conn:
            row = conn.execute(select(d).where(d.c.id == letter_id)).mappings().first()
        return _from_row(row) if row else None

    def redrive(self, letter_id: str, *, now: datetime) -> Execution | None:
        """Replaces the dead letter by a new pending attempt of its occurrence, due now; None when absent."""
        with translate_errors(), self._database.begin() as conn:
            row = conn.execute(delete(d).where(d.c.id == letter_id).returning(*d.c)).mappings().first()
            if row is None:
                return None
            letter = _from_row(row)
            execution = lifecycle.redrive(letter, now)
            conn.execute(insert(e).values(_execution_row(execution)))
            self._queue.notify(conn)
        return execution

    def discard(self, letter_id: str) -> bool:
        """Deletes a dead letter; False when absent. The failed executions stay in the history."""
        with translate_errors(), self._database.begin() as conn:
            return conn.execute(delete(d).where(d.c.id == letter_id)).rowcount > 0
