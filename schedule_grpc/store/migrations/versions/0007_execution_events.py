"""execution events (filled by triggers), history indexes, per-task history retention

Revision ID: 0007
Revises: 0001

Events are derived in the database, not in the code paths that write executions: a trigger on
task_executions records every insert and status change, one on dead_letters records the move to the
dead-letter queue. On Postgres the trigger also NOTIFYs, so watchers on every replica wake up.

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

CHANNEL = "schedule_execution_events"

# The event a status stands for; a pending row inserted by a retry is "retried".
_KIND = """CASE
    WHEN NEW.status = 'pending' AND {insert} AND NEW."trigger" = 'retry' THEN 'retried'
    WHEN NEW.status = 'pending' THEN 'queued'
    WHEN NEW.status = 'running' THEN 'started'
    WHEN NEW.status = 'success' THEN 'succeeded'
    WHEN NEW.status = 'failed' THEN 'failed'
    WHEN NEW.status = 'cancelled' THEN 'cancelled'
    WHEN NEW.status = 'missed' THEN 'missed'
    WHEN NEW.status = 'skipped' THEN 'skipped'
END"""
# When it happened, by the service's clock (the row's own timestamps).
_OCCURRED = """CASE
    WHEN NEW.status = 'pending' THEN NEW.created_at
    WHEN NEW.status = 'running' THEN COALESCE(NEW.started_at, NEW.created_at)
    ELSE COALESCE(NEW.completed_at, NEW.started_at, NEW.created_at)
END"""
_COLUMNS = (
    'tx, kind, execution_id, task_id, task_name, status, "trigger", attempt, scheduled_for, started_at, '
    "duration_ms, error_category, occurred_at"
)
_STATUSES = "('pending', 'running', 'success', 'failed', 'cancelled', 'missed', 'skipped')"
_VALUES = (
    '{tx}, {kind}, NEW.id, NEW.task_id, NEW.task_name, NEW.status, NEW."trigger", NEW.attempt, '
    "NEW.scheduled_for, NEW.started_at, NEW.duration_ms, NEW.error_category, " + _OCCURRED
)
_DEAD_LETTER_VALUES = (
    "{tx}, 'dead_lettered', NEW.execution_id, NEW.task_id, NEW.task_name, "
    "COALESCE((SELECT status FROM task_executions WHERE id = NEW.execution_id), 'failed'), "
    '(SELECT "trigger" FROM task_executions WHERE id = NEW.execution_id), NEW.attempts, NEW.scheduled_for, '
    "NULL, NULL, NEW.error_category, NEW.created_at"
)

# The writing transaction's id (xid8 as bigint): readers order by it (see tables.execution_events).
_PG_TX = "pg_current_xact_id()::text::bigint"

_POSTGRES_UP = [
    f"""
    CREATE OR REPLACE FUNCTION schedule_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
            RETURN NULL;
        END IF;
        IF NEW.status NOT IN {_STATUSES} THEN
            RETURN NULL;
        END IF;
        INSERT INTO execution_events ({_COLUMNS})
        VALUES ({_VALUES.format(tx=_PG_TX, kind=_KIND.format(insert="TG_OP = 'INSERT'"))});
        PERFORM pg_notify('{CHANNEL}', '');
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER task_executions_events AFTER INSERT OR UPDATE OF status ON task_executions
    FOR EACH ROW EXECUTE FUNCTION schedule_execution_event()
    """,
    f"""
    CREATE OR REPLACE FUNCTION schedule_dead_letter_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO execution_events ({_COLUMNS})
        VALUES ({_DEAD_LETTER_VALUES.format(tx=_PG_TX)});
        PERFORM pg_notify('{CHANNEL}', '');
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER dead_letters_events AFTER INSERT ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION schedule_dead_letter_event()
    """,
]
_POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS dead_letters_events ON dead_letters",
    "DROP FUNCTION IF EXISTS schedule_dead_letter_event()",
    "DROP TRIGGER IF EXISTS task_executions_events ON task_executions",
    "DROP FUNCTION IF EXISTS schedule_execution_event()",
]

_SQLITE_UP = [
    f"""
    CREATE TRIGGER task_executions_event_insert AFTER INSERT ON task_executions
    WHEN NEW.status IN {_STATUSES}
    BEGIN
        INSERT INTO execution_events ({_COLUMNS})
        VALUES ({_VALUES.format(tx="0", kind=_KIND.format(insert="1"))});
    END
    """,
    f"""
    CREATE TRIGGER task_executions_event_update AFTER UPDATE OF status ON task_executions
    WHEN NEW.status IS NOT OLD.status AND NEW.status IN {_STATUSES}
    BEGIN
        INSERT INTO execution_events ({_COLUMNS})
        VALUES ({_VALUES.format(tx="0", kind=_KIND.format(insert="0"))});
    END
    """,
    f"""
    CREATE TRIGGER dead_letters_event_insert AFTER INSERT ON dead_letters
    BEGIN
        INSERT INTO execution_events ({_COLUMNS})
        VALUES ({_DEAD_LETTER_VALUES.format(tx="0")});
    END
    """,
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS dead_letters_event_insert",
    "DROP TRIGGER IF EXISTS task_executions_event_update",
    "DROP TRIGGER IF EXISTS task_executions_event_insert",
]


def upgrade() -> None:
    op.create_table(
        "execution_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("tx", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("task_name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("error_category", sa.String(length=16), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_events")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("execution_events") as batch_op:
        batch_op.create_index(batch_op.f("ix_execution_events_tx_id"), ["tx", "id"])
        batch_op.create_index(batch_op.f("ix_execution_events_occurred_at"), ["occurred_at"])
    with op.batch_alter_table("task_executions") as batch_op:
        batch_op.create_index(batch_op.f("ix_task_executions_task_id_created_at_id"), ["task_id", "created_at", "id"])
        batch_op.create_index(batch_op.f("ix_task_executions_created_at_id"), ["created_at", "id"])
        batch_op.create_index(batch_op.f("ix_task_executions_status_created_at_id"), ["status", "created_at", "id"])
    with op.batch_alter_table("dead_letters") as batch_op:
        batch_op.create_index(batch_op.f("ix_dead_letters_created_at"), ["created_at"])
    with op.batch_alter_table("scheduled_tasks") as batch_op:
        batch_op.add_column(sa.Column("history_retention_s", sa.Float(), nullable=True))
    for statement in _POSTGRES_UP if op.get_context().dialect.name == "postgresql" else _SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in _POSTGRES_DOWN if op.get_context().dialect.name == "postgresql" else _SQLITE_DOWN:
        op.execute(statement)
    with op.batch_alter_table("scheduled_tasks") as batch_op:
        batch_op.drop_column("history_retention_s")
    with op.batch_alter_table("dead_letters") as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_created_at"))
    with op.batch_alter_table("task_executions") as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_executions_status_created_at_id"))
        batch_op.drop_index(batch_op.f("ix_task_executions_created_at_id"))
        batch_op.drop_index(batch_op.f("ix_task_executions_task_id_created_at_id"))
    op.drop_table("execution_events")
