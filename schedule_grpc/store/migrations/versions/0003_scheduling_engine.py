"""scheduling engine: APScheduler's job table, an index of the active executions of a task

Revision ID: 0003
Revises: 0001

The job table is created here (and not by APScheduler at start-up) so replicas never race to
create it. Its shape is the one APScheduler 3's SQLAlchemyJobStore defines.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"])
    # Overlap policy: "is an execution of this task pending or running?" at every fire.
    op.create_index(
        "ix_task_executions_active_task",
        "task_executions",
        ["task_id"],
        postgresql_where=sa.text("status IN ('pending', 'running')"),
        sqlite_where=sa.text("status IN ('pending', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_task_executions_active_task", table_name="task_executions")
    op.drop_index("ix_apscheduler_jobs_next_run_time", table_name="apscheduler_jobs")
    op.drop_table("apscheduler_jobs")
