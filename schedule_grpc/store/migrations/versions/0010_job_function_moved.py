"""the engine's job function moved: APScheduler's job rows are dropped and rebuilt

Revision ID: 0010
Revises: 0009

Each job row names its function as "module:function" (``schedule_grpc.scheduling.jobs.FIRE_REF``); the
module moved from ``schedule_grpc.engine.jobs`` to ``schedule_grpc.scheduling.jobs``, so rows written
before it cannot be loaded. The job table is derived state: the tasks table (each task's ``next_run``)
is the source of truth, and the next leader's reconciliation writes the jobs again from it, with
catch-up of anything due meanwhile. Emptying the table loses no occurrence.

"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM apscheduler_jobs")


def downgrade() -> None:
    op.execute("DELETE FROM apscheduler_jobs")
