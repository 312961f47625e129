"""audit trail; executions and dead letters outlive their task

Revision ID: 0009
Revises: 0007

The foreign keys from task_executions and dead_letters to scheduled_tasks (ON DELETE CASCADE) are
dropped: deleting a task no longer deletes the record of what ran. Both tables keep the task's name
and are read by it; retention removes them. audit_entries records who changed which task.

"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# SQLite drops a foreign key by rebuilding the table, which drops its triggers: 0007's are put back.
_events = importlib.import_module("schedule_grpc.store.migrations.versions.0007_execution_events")


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    if sqlite:
        for statement in _events._SQLITE_DOWN:
            op.execute(statement)
    with op.batch_alter_table("task_executions") as batch_op:
        batch_op.drop_constraint("fk_task_executions_task_id_scheduled_tasks", type_="foreignkey")
        batch_op.create_index(
            batch_op.f("ix_task_executions_task_name_created_at_id"), ["task_name", "created_at", "id"]
        )
    with op.batch_alter_table("dead_letters") as batch_op:
        batch_op.drop_constraint("fk_dead_letters_task_id_scheduled_tasks", type_="foreignkey")
        batch_op.create_index(batch_op.f("ix_dead_letters_task_name_id"), ["task_name", "id"])
    if sqlite:
        for statement in _events._SQLITE_UP:
            op.execute(statement)
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("task_name", sa.String(length=128), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("before", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("after", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    )
    with op.batch_alter_table("audit_entries") as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_entries_occurred_at_id"), ["occurred_at", "id"])
        batch_op.create_index(
            batch_op.f("ix_audit_entries_task_name_occurred_at_id"), ["task_name", "occurred_at", "id"]
        )
        batch_op.create_index(batch_op.f("ix_audit_entries_actor_occurred_at_id"), ["actor", "occurred_at", "id"])


def downgrade() -> None:
    op.drop_table("audit_entries")
    sqlite = op.get_context().dialect.name == "sqlite"
    if sqlite:
        for statement in _events._SQLITE_DOWN:
            op.execute(statement)
    # Rows of deleted tasks would break the foreign key: they go, as they did before this revision.
    op.execute("DELETE FROM dead_letters WHERE task_id NOT IN (SELECT id FROM scheduled_tasks)")
    op.execute("DELETE FROM task_executions WHERE task_id NOT IN (SELECT id FROM scheduled_tasks)")
    with op.batch_alter_table("dead_letters") as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_task_name_id"))
        batch_op.create_foreign_key(
            "fk_dead_letters_task_id_scheduled_tasks", "scheduled_tasks", ["task_id"], ["id"], ondelete="CASCADE"
        )
    with op.batch_alter_table("task_executions") as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_executions_task_name_created_at_id"))
        batch_op.create_foreign_key(
            "fk_task_executions_task_id_scheduled_tasks", "scheduled_tasks", ["task_id"], ["id"], ondelete="CASCADE"
        )
    if sqlite:
        for statement in _events._SQLITE_UP:
            op.execute(statement)
