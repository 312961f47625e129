"""Alembic environment: runs on the connection the service hands over (see store.db.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from schedule_grpc.store.platform_tables import platform_metadata
from schedule_grpc.store.tables import metadata

# The platform's default tables (migration 0005) are compared too, so autogenerate sees them.
target_metadata = [metadata, platform_metadata]

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # the alembic command line: `alembic -x url=... upgrade head`
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    assert url, "pass -x url=DATABASE_URL"
    with create_engine(url).connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
