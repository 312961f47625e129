"""The tasks table: the source of truth of what is scheduled."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from schedule_grpc.domain.errors import AlreadyExists
from schedule_grpc.domain.models import ExecutionStatus, OverlapPolicy, RetryPolicy, Task
from schedule_grpc.store.db import autocommit, is_unique_violation, translate_errors
from schedule_grpc.store.tables import scheduled_tasks as t
from schedule_grpc.store.tables import task_executions as e

# Postgres channel on which every committed change to a task is announced (payload: the task name).
CHANGES_CHANNEL = "schedule_task_changes"


def _to_row(task: Task) -> dict[str, Any]:
    policy = task.retry_policy
    return {
        "id": task.id,
        "name": task.name,
        "schedule": task.schedule,
        "timezone": task.timezone,
        "handler": task.handler,
        "enabled": task.enabled,
        "metadata": task.metadata,
        "last_run": task.last_run,
        "next_run": task.next_run,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "retry_max": policy.max_retries,
        "retry_initial_delay_s": policy.initial_delay.total_seconds(),
        "retry_multiplier": policy.multiplier,
        "retry_max_delay_s": policy.max_delay.total_seconds(),
        "retry_jitter": policy.jitter,
        "timeout_s": task.timeout.total_seconds(),
        "overlap_policy": task.overlap_policy.value,
        "catchup_window_s": task.catchup_window.total_seconds(),
        "critical": task.critical,
        "memory_limit_mb": task.memory_limit_mb,
        "owner": task.owner,
        "history_retention_s": None if task.history_retention is None else task.history_retention.total_seconds(),
    }


def _from_row(row: RowMapping) -> Task:
    return Task(
        id=row["id"],
        name=row["name"],
        schedule=row["schedule"],
        handler=row["handler"],
        enabled=row["enabled"],
        metadata=row["metadata"],
        timezone=row["timezone"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_run=row["last_run"],
        next_run=row["next_run"],
        retry_policy=RetryPolicy(
            max_retries=row["retry_max"],
            initial_delay=timedelta(seconds=row["retry_initial_delay_s"]),
            multiplier=row["retry_multiplier"],
            max_delay=timedelta(seconds=row["retry_max_delay_s"]),
            jitter=row["retry_jitter"],
        ),
        timeout=timedelta(seconds=row["timeout_s"]),
        overlap_policy=OverlapPolicy(row["overlap_policy"]),
        catchup_window=timedelta(seconds=row["catchup_window_s"]),
        critical=row["critical"],
        memory_limit_mb=row["memory_limit_mb"],
        owner=row["owner"],
        history_retention=(
            None if row["history_retention_s"] is None else timedelta(seconds=row["history_retention_s"])
        ),
    )


# Built once, so SQLAlchemy's compiled-statement cache serves every insert.
_INSERT = insert(t).values({c.name: bindparam(c.name) for c in t.c})
# On Postgres the NOTIFY rides on the INSERT: one round trip.
_INSERT_AND_NOTIFY = select(func.pg_notify(CHANGES_CHANNEL, _INSERT.returning(t.c.name).cte("inserted").c.name))


class TaskStore:
    """Reads and writes tasks; every write announces itself on CHANGES_CHANNEL in its transaction."""

    def __init__(self, database: Engine, *, on_change: Callable[[str], None] | None = None) -> None:
        self._database = database
        self._reads = autocommit(database)
        self._notify = database.dialect.name == "postgresql"
        # Told, after commit, of each change made through this store (in-process delivery, e.g. SQLite).
        self._on_change = on_change

    def _changed(self, name: str) -> None:
        if self._on_change is not None:
            self._on_change(name)

    def _announce(self, conn: Connection, name: str) -> None:
        if self._notify:
            conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANGES_CHANNEL, "p": name})

    def usage(self, owner: str | None) -> tuple[int, int]:
        """How many tasks ``owner`` has, and the size of their metadata as stored text."""
        mine = t.c.owner == owner if owner is not None else t.c.owner.is_(None)
        size = func.coalesce(func.sum(func.length(cast(t.c.metadata, Text))), 0)
        with translate_errors(), self._reads.connect() as conn:
            count, used = conn.execute(select(func.count(), size).where(mine)).one()
        return int(count), int(used)

    def insert(self, task: Task) -> Task:
        """Stores a new task; AlreadyExists when the name is taken."""
        row = _to_row(task)
        try:
            # one statement (the NOTIFY rides on it): autocommit makes it one round trip, not BEGIN/INSERT/COMMIT
            with translate_errors(), self._reads.connect() as conn:
                conn.execute(_INSERT_AND_NOTIFY if self._notify else _INSERT, row)
        except IntegrityError as error:
            if is_unique_violation(error):
                raise AlreadyExists(f"task {task.name!r} already exists", reason="TASK_EXISTS") from error
            raise
        self._changed(task.name)
        return task

    def get(self, name: str) -> Task | None:
        with translate_errors(), self._reads.connect() as conn:
            row = conn.execute(select(t).where(t.c.name == name)).mappings().first()
        return _from_row(row) if row else None

    def list(self, *, limit: int, after_name: str | None = None) -> Sequence[Task]:
        """Up to ``limit`` tasks in name order, after ``after_name`` when given."""
        query = select(t).order_by(t.c.name).limit(limit)
        if after_name is not None:
            query = query.where(t.c.name > after_name)
        with translate_errors(), self._reads.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings().all()]

    def due_before(self, until: datetime, *, limit: int, after_name: str | None = None) -> Sequence[Task]:
        """Up to ``limit`` enabled tasks whose next run is unknown or before ``until``, in name order."""
        query = (
            select(t)
            .where(t.c.enabled.is_(True), or_(t.c.next_run.is_(None), t.c.next_run < until))
            .order_by(t.c.name)
            .limit(limit)
        )
        if after_name is not None:
            query = query.where(t.c.name > after_name)
        with translate_errors(), self._reads.connect() as conn:
            return [_from_row(r) for r in conn.execute(query).mappings().all()]

    def set_enabled(self, name: str, *, enabled: bool, next_run: datetime | None, now: datetime) -> Task | None:
        """Enables or disables a task and sets its next run; None when absent."""
        query = (
            update(t).where(t.c.name == name).values(enabled=enabled, next_run=next_run, updated_at=now).returning(*t.c)
        )
        with translate_errors(), self._database.begin() as conn:
            row = conn.execute(query).mappings().first()
            if row is not None:
                self._announce(conn, name)
        if row is not None:
            self._changed(name)
        return _from_row(row) if row else None

    def set_last_run(self, task_id: str, last_run: datetime) -> None:
        """Records the start of the task's latest execution (never moves backwards)."""
        query = (
            update(t)
            .where(t.c.id == task_id)
            .where((t.c.last_run.is_(None)) | (t.c.last_run < last_run))
            .values(last_run=last_run)
        )
        with translate_errors(), self._database.begin() as conn:
            conn.execute(query)

    def delete(self, name: str, *, now: datetime | None = None) -> Task | None:
        """Deletes a task and returns it; None when absent.

        Its executions and dead letters stay (readable by the task's name until retention removes
        them); its pending executions are cancelled with it, at ``now``. A running one is the caller's
        choice (the service cancels it or lets it finish; a lost replica's is recovered without a retry).
        """
        with translate_errors(), self._database.begin() as conn:
            row = conn.execute(delete(t).where(t.c.name == name).returning(*t.c)).mappings().first()
            deleted = row is not None
            if row is not None:
                # Pending executions end with their task: nothing claims them for a task that is gone.
                conn.execute(
                    update(e)
                    .where(e.c.task_id == row["id"], e.c.status == ExecutionStatus.PENDING.value)
                    .values(
                        status=ExecutionStatus.CANCELLED.value,
                        completed_at=now or row["updated_at"],
                        error="cancelled: the task was unregistered",
                        lease_owner=None,
                        lease_expires_at=None,
                    )
                )
                self._announce(conn, name)
        if deleted:
            self._changed(name)
        return _from_row(row) if row is not None else None
