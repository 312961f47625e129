"""Hands occurrences on: one execution row per (task, instant), fenced by the occurrence index.

The partial unique index ``uq_task_executions_occurrence`` (task_id, scheduled_for, attempt) is the
fence: a second insert of the same occurrence (a deposed leader finishing its pass, a replayed pass
after a crash) is ignored by the database and counted, never an error and never a second row.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Insert, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from schedule_grpc.domain import lifecycle
from schedule_grpc.domain.firing import Occurrence, decide
from schedule_grpc.domain.models import ExecutionStatus, OverlapPolicy
from schedule_grpc.store.db import among, translate_errors
from schedule_grpc.store.executions import _to_row as _execution_row
from schedule_grpc.store.tables import UtcDateTime
from schedule_grpc.store.tables import scheduled_tasks as t
from schedule_grpc.store.tables import task_executions as e

log = logging.getLogger(__name__)

# Postgres channel announcing, in the inserting transaction, that pending executions were queued.
EXECUTIONS_CHANNEL = "schedule_executions"

_ACTIVE = (ExecutionStatus.PENDING.value, ExecutionStatus.RUNNING.value)


@dataclass(frozen=True)
class EnqueueResult:
    """What became of a batch of occurrences."""

    pending: int = 0
    missed: int = 0
    skipped: int = 0
    duplicates: int = 0  # refused by the fence: already recorded
    dropped: int = 0  # the task was deleted, disabled or rescheduled meanwhile


class OccurrenceStore:
    """Records occurrences as execution rows and keeps each task's next_run."""

    def __init__(self, database: Engine) -> None:
        self._database = database
        self._postgres = database.dialect.name == "postgresql"

    def enqueue(
        self, occurrences: Sequence[Occurrence], next_runs: Mapping[str, datetime], now: datetime
    ) -> EnqueueResult:
        """Inserts one row per occurrence and sets next_run, in one transaction (with a NOTIFY)."""
        task_ids = sorted({o.task_id for o in occurrences} | set(next_runs))
        if not task_ids:
            return EnqueueResult()
        with translate_errors(), self._database.begin() as conn:
            tasks = self._tasks(conn, task_ids)
            pending, running = self._active(conn, task_ids)
            rows: list[dict[str, Any]] = []
            dropped = 0
            stale: set[str] = set()  # rescheduled meanwhile: their next_run is the reconciliation's to set
            for o in sorted(occurrences, key=lambda o: (o.task_id, o.scheduled_for)):
                task = tasks.get(o.task_id)
                if task is None or not task.enabled or (task.schedule, task.timezone) != (o.schedule, o.timezone):
                    dropped += 1
                    stale.add(o.task_id)
                    continue
                decision = decide(
                    overlap=OverlapPolicy(task.overlap_policy),
                    catchup_window=timedelta(seconds=task.catchup_window_s),
                    scheduled_for=o.scheduled_for,
                    now=now,
                    pending=pending[o.task_id],
                    running=running[o.task_id],
                )
                if decision.status is ExecutionStatus.PENDING:
                    pending[o.task_id] += 1
                error = decision.error
                if error is not None and o.note:
                    error = f"{error}; {o.note}"
                rows.append(_row(o, task.name, decision.status, error, now))
            statuses = Counter(self._insert_rows(conn, rows)) if rows else Counter[str]()
            self._set_next_runs(
                conn, {k: v for k, v in next_runs.items() if k in tasks and tasks[k].enabled and k not in stale}
            )
            queued = statuses.get(ExecutionStatus.PENDING.value, 0)
            if queued and self._postgres:
                conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": EXECUTIONS_CHANNEL, "p": str(queued)})
        result = EnqueueResult(
            pending=queued,
            missed=statuses.get(ExecutionStatus.MISSED.value, 0),
            skipped=statuses.get(ExecutionStatus.SKIPPED.value, 0),
            duplicates=len(rows) - sum(statuses.values()),
            dropped=dropped,
        )
        if result.duplicates:
            log.info("occurrences already recorded were ignored", extra={"duplicates": result.duplicates})
        return result

    def _tasks(self, conn: Connection, task_ids: list[str]) -> dict[str, Any]:
        query = select(
            t.c.id, t.c.name, t.c.schedule, t.c.timezone, t.c.enabled, t.c.overlap_policy, t.c.catchup_window_s
        ).where(among(t.c.id, "ids", postgres=self._postgres))
        if self._postgres:
            # A task cannot be deleted under our insert (its foreign key would fail the batch). FOR KEY SHARE, not
            # FOR SHARE: two passes storing the same task (a deposed leader's last one and its successor's catch-up)
            # each then update its next_run, and two share locks upgraded to that update deadlocked.
            query = query.with_for_update(read=True, key_share=True)
        return {row.id: row for row in conn.execute(query, {"ids": task_ids})}

    def _active(self, conn: Connection, task_ids: list[str]) -> tuple[Counter[str], Counter[str]]:
        query = (
            select(e.c.task_id, e.c.status, func.count())
            .where(among(e.c.task_id, "ids", postgres=self._postgres), e.c.status.in_(_ACTIVE))
            .group_by(e.c.task_id, e.c.status)
        )
        pending: Counter[str] = Counter()
        running: Counter[str] = Counter()
        for task_id, status, count in conn.execute(query, {"ids": task_ids}):
            (pending if status == ExecutionStatus.PENDING.value else running)[task_id] = count
        return pending, running

    def _insert_rows(self, conn: Connection, rows: list[dict[str, Any]]) -> list[str]:
        """Inserts ``rows`` (the fence ignores occurrences already recorded); the statuses of those inserted."""
        if not self._postgres:
            return list(conn.execute(self._insert().returning(e.c.status), rows).scalars())
        # One array per column, unnested by the server: the multi-row VALUES statement SQLAlchemy builds
        # for 1,000 rows cost ~50 ms of client CPU to render and parse on every burst, before it was sent.
        columns = ", ".join(_SCHEDULED_COLUMNS)
        arrays = ", ".join(f"CAST(:{c} AS {_PG_ARRAY[c]})" for c in _SCHEDULED_COLUMNS)
        statement = text(
            f"INSERT INTO task_executions ({columns}) SELECT * FROM unnest({arrays})"
            " ON CONFLICT DO NOTHING RETURNING status"
        )
        return list(conn.execute(statement, {c: [r[c] for r in rows] for c in _SCHEDULED_COLUMNS}).scalars())

    def _insert(self) -> Insert:
        dialect_insert = postgresql.insert if self._postgres else sqlite.insert
        return dialect_insert(e).on_conflict_do_nothing()

    def _set_next_runs(self, conn: Connection, next_runs: Mapping[str, datetime]) -> None:
        """Moves next_run forward only, so a late batch never undoes an enable or a newer fire."""
        if not next_runs:
            return
        if self._postgres:
            # One statement for the batch: an executemany sent one UPDATE per task, which was most of the
            # time a burst of 1,000 occurrences took to reach the executors (the rows wait for this commit).
            ids, instants = zip(*sorted(next_runs.items()), strict=True)
            conn.execute(
                text(
                    "UPDATE scheduled_tasks AS t SET next_run = v.nr"
                    " FROM unnest(CAST(:ids AS text[]), CAST(:nrs AS timestamptz[])) AS v(tid, nr)"
                    " WHERE t.id = v.tid AND t.enabled AND (t.next_run IS NULL OR t.next_run < v.nr)"
                ),
                {"ids": list(ids), "nrs": list(instants)},
            )
            return
        query = (
            update(t)
            .where(
                t.c.id == bindparam("tid"),
                t.c.enabled.is_(True),
                or_(t.c.next_run.is_(None), t.c.next_run < bindparam("nr", type_=UtcDateTime())),
            )
            .values(next_run=bindparam("nr", type_=UtcDateTime()))
        )
        conn.execute(query, [{"tid": k, "nr": v} for k, v in sorted(next_runs.items())])


def _row(o: Occurrence, task_name: str, status: ExecutionStatus, error: str | None, now: datetime) -> dict[str, Any]:
    row = _execution_row(lifecycle.scheduled(o.task_id, task_name, o.scheduled_for, now, status=status, error=error))
    return {k: row[k] for k in _SCHEDULED_COLUMNS}


# What an occurrence's row sets; the other columns keep their defaults (NULL, not a JSON null result).
_SCHEDULED_COLUMNS = (
    "id", "task_id", "task_name", "trigger", "scheduled_for", "attempt", "status", "due_at", "created_at",
    "completed_at", "error",
)  # fmt: skip

# The Postgres array type of each of those columns (for the unnest insert).
_PG_ARRAY = {
    "id": "text[]", "task_id": "text[]", "task_name": "text[]", "trigger": "text[]", "scheduled_for": "timestamptz[]",
    "attempt": "int[]", "status": "text[]", "due_at": "timestamptz[]", "created_at": "timestamptz[]",
    "completed_at": "timestamptz[]", "error": "text[]",
}  # fmt: skip
