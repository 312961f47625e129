"""leader lease: the leader's firing loop proves it is alive; epochs record why they began

Revision ID: 0008
Revises: 0007

One row (``name`` = 'scheduler') holds the current leader's epoch, the backend pid of its lock
connection and an expiry, renewed by the leader's firing loop every second or so. A follower that
sees it go unrenewed past its expiry and a grace terminates that backend (releasing the advisory
lock) and takes over; each epoch records the lock connection's backend and why it began.

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leader_lease",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("replica_id", sa.String(length=128), nullable=False),
        sa.Column("backend_pid", sa.Integer(), nullable=True),
        sa.Column("renewals", sa.BigInteger(), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leader_lease")),
    )
    with op.batch_alter_table("leader_epochs") as batch:
        batch.add_column(sa.Column("backend_pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leader_epochs") as batch:
        batch.drop_column("reason")
        batch.drop_column("backend_pid")
    op.drop_table("leader_lease")
