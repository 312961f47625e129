"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; this module describes it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on Postgres (timestamptz) and SQLite (text) alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonType: Any = JSON().with_variant(JSONB(), "postgresql")

scheduled_tasks = Table(
    "scheduled_tasks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("schedule", String(256), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("handler", String(128), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("metadata", JsonType, nullable=False),
    Column("last_run", UtcDateTime),
    Column("next_run", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("retry_max", Integer, nullable=False),
    Column("retry_initial_delay_s", Float, nullable=False),
    Column("retry_multiplier", Float, nullable=False),
    Column("retry_max_delay_s", Float, nullable=False),
    Column("retry_jitter", Boolean, nullable=False),
    Column("timeout_s", Float, nullable=False),
    Column("overlap_policy", String(16), nullable=False),
    Column("catchup_window_s", Float, nullable=False),
    Column("critical", Boolean, nullable=False, server_default=text("false")),
    Column("memory_limit_mb", Integer),
    Column("owner", String(128)),  # caller that registered the task; NULL when registered open
    # How long the task's executions are kept; NULL: the service-wide retention (migration 0007).
    Column("history_retention_s", Float),
    Index(None, "enabled", "next_run"),
)

task_executions = Table(
    "task_executions",
    metadata,
    Column("id", String(64), primary_key=True),
    # No foreign key: executions outlive their task (migration 0009) and stay readable by its name.
    Column("task_id", String(64), nullable=False),
    Column("task_name", String(128), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("scheduled_for", UtcDateTime, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("completed_at", UtcDateTime),
    Column("error", Text),
    Column("error_category", String(16)),
    Column("traceback", Text),
    Column("result", JsonType),
    Column("duration_ms", Integer),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", UtcDateTime),
    # History of one task, newest first (ids sort by creation time).
    Index(None, "task_id", "id"),
    # The work queue: pending rows by due time.
    Index(
        "ix_task_executions_pending_due",
        "due_at",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
    # The fence: one row per occurrence and attempt of a scheduled run.
    Index(
        "uq_task_executions_occurrence",
        "task_id",
        "scheduled_for",
        "attempt",
        unique=True,
        postgresql_where=text("trigger IN ('schedule', 'retry')"),
        sqlite_where=text("trigger IN ('schedule', 'retry')"),
    ),
    # Overlap policy: the pending or running executions of a task, at every fire.
    Index(
        "ix_task_executions_active_task",
        "task_id",
        postgresql_where=text("status IN ('pending', 'running')"),
        sqlite_where=text("status IN ('pending', 'running')"),
    ),
    # History queries (migration 0007): newest first by creation, per task, across tasks, per status.
    Index(None, "task_id", "created_at", "id"),
    Index(None, "created_at", "id"),
    Index(None, "status", "created_at", "id"),
    # History by task name, which outlives the task (migration 0009).
    Index(None, "task_name", "created_at", "id"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("execution_id", String(64), nullable=False, unique=True),
    Column("task_id", String(64), nullable=False),  # no foreign key: outlives the task (migration 0009)
    Column("task_name", String(128), nullable=False),
    Column("scheduled_for", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text),
    Column("error_category", String(16)),
    Column("created_at", UtcDateTime, nullable=False),
    # Retention deletes the oldest first (migration 0007).
    Index(None, "created_at"),
    Index(None, "task_name", "id"),
)

# Who changed which task, when, and the task before and after (migration 0009). Kept after the
# task is deleted; newest first by (occurred_at, id).
audit_entries = Table(
    "audit_entries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("action", String(32), nullable=False),
    Column("task_name", String(128), nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("actor", String(128)),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("before", JsonType),
    Column("after", JsonType),
    Column("subject_id", String(64)),
    Index(None, "occurred_at", "id"),
    Index(None, "task_name", "occurred_at", "id"),
    Index(None, "actor", "occurred_at", "id"),
)

# APScheduler 3's job table (SQLAlchemyJobStore's shape): the scheduling engine's derived state,
# written by the leader only. Described here; APScheduler builds its own Table object for it.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    MetaData(),
    Column("id", String(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)

leader_epochs = Table(
    "leader_epochs",
    metadata,
    Column("epoch", Integer, primary_key=True, autoincrement=True),
    Column("replica_id", String(128), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("backend_pid", Integer),  # the lock connection's backend (migration 0008)
    Column("reason", Text),  # why this epoch began: a free lock, or a takeover from a silent leader
)

# The current leader's lease (one row, name 'scheduler'), renewed by its firing loop (migration 0008).
leader_lease = Table(
    "leader_lease",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("epoch", Integer, nullable=False),
    Column("replica_id", String(128), nullable=False),
    Column("backend_pid", Integer),
    Column("renewals", BigInteger, nullable=False),
    Column("renewed_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# Every change of an execution's status, written by database triggers on task_executions and
# dead_letters (migration 0007), so that whatever code writes executions produces events.
# Readers follow (tx, id): on Postgres ``tx`` is the writing transaction's id, and only events of
# transactions older than every one still running are read, so no event can appear behind a
# reader's position; on SQLite writers are serialised and ``tx`` is 0.
execution_events = Table(
    "execution_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("tx", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("execution_id", String(64), nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("task_name", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger", String(16)),
    Column("attempt", Integer, nullable=False),
    Column("scheduled_for", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("duration_ms", Integer),
    Column("error_category", String(16)),
    Column("occurred_at", UtcDateTime, nullable=False),
    Index(None, "tx", "id"),
    Index(None, "occurred_at"),
    sqlite_autoincrement=True,
)
