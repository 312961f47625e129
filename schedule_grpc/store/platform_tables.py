"""The documented default tables of the platform database, which the built-in handlers work on.

They live in their own MetaData: the platform database may be another database than the service's
(SCHEDULE_PLATFORM_DATABASE_URL). In the service's own database (the default) migration 0005 creates
them; in a separate platform database the platform owns its schema, and ``create_platform_tables``
(``python -m schedule_grpc.store.platform_tables URL``) creates the missing ones there.
Embedding vectors are JSON arrays of numbers, which both SQLite and Postgres store without extensions.
"""

from __future__ import annotations

import sys

from sqlalchemy import JSON, Column, Float, Index, Integer, MetaData, String, Table, Text, inspect
from sqlalchemy.dialects.postgresql import JSONB

from schedule_grpc.store.tables import JsonType, UtcDateTime

# An absent vector is SQL NULL (not the JSON value null), so "IS NULL" finds the rows to embed.
VectorType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

platform_metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

sessions = Table(
    "sessions",
    platform_metadata,
    Column("id", String(128), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index(None, "expires_at"),
)

api_keys = Table(
    "api_keys",
    platform_metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("key_hash", String(256), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),  # NULL: never expires
    Index(None, "expires_at"),
)

generations = Table(
    "generations",
    platform_metadata,
    Column("id", String(128), primary_key=True),
    Column("model", String(256), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("output", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "created_at"),
)

entities = Table(
    "entities",
    platform_metadata,
    Column("id", String(128), primary_key=True),
    Column("type", String(128), nullable=False),
    Column("name", String(512), nullable=False),
    Column("content", Text),
    Column("embedding", VectorType),
    Column("embedding_model", String(256)),
    Column("embedded_at", UtcDateTime),
)

document_chunks = Table(
    "document_chunks",
    platform_metadata,
    Column("id", String(128), primary_key=True),
    Column("document_id", String(128), nullable=False),
    Column("chunk_index", Integer, nullable=False),
    Column("content", Text),
    Column("embedding", VectorType),
    Column("embedding_model", String(256)),
    Column("embedded_at", UtcDateTime),
)

analytics_snapshots = Table(
    "analytics_snapshots",
    platform_metadata,
    # The occurrence the snapshot is for: a retry of the same occurrence replaces it.
    Column("computed_for", UtcDateTime, primary_key=True),
    Column("data", JsonType, nullable=False),
)

service_health = Table(
    "service_health",
    platform_metadata,
    Column("name", String(128), primary_key=True),
    Column("target", String(1024), nullable=False),
    Column("status", String(16), nullable=False),  # up | down
    Column("latency_ms", Float),
    Column("detail", Text),
    Column("checked_at", UtcDateTime, nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
)

rate_limit_usage = Table(
    "rate_limit_usage",
    platform_metadata,
    Column("key", String(256), primary_key=True),  # API key id, client or route
    Column("used", Integer, nullable=False),
    Column("limit", Integer, nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
)

mcp_servers = Table(
    "mcp_servers",
    platform_metadata,
    Column("name", String(512), primary_key=True),
    Column("description", Text, nullable=False),
    Column("version", String(128), nullable=False),
    Column("status", String(32), nullable=False),
    Column("repository_url", String(2048)),
    Column("website_url", String(2048)),
    Column("packages", JsonType, nullable=False),
    Column("remotes", JsonType, nullable=False),
    Column("published_at", UtcDateTime),
    Column("registry_updated_at", UtcDateTime),
    Column("imported_at", UtcDateTime, nullable=False),
)

public_apis = Table(
    "public_apis",
    platform_metadata,
    Column("name", String(512), primary_key=True),  # APIs.guru key, e.g. "stripe.com" or "1password.com:events"
    Column("title", String(1024), nullable=False),
    Column("description", Text, nullable=False),
    Column("version", String(128), nullable=False),
    Column("openapi_url", String(2048)),
    Column("categories", JsonType, nullable=False),
    Column("added_at", UtcDateTime),
    Column("source_updated_at", UtcDateTime),
    Column("imported_at", UtcDateTime, nullable=False),
)

import_runs = Table(
    "import_runs",
    platform_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("imported_at", UtcDateTime, nullable=False),
    Column("fetched", Integer, nullable=False),
    Column("inserted", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Index(None, "source", "id"),
)


def create_platform_tables(url: str) -> list[str]:
    """Creates the default tables missing from the database at ``url``; returns their names."""
    from schedule_grpc.store.db import make_engine

    database = make_engine(url)
    try:
        with database.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            platform_metadata.create_all(conn, checkfirst=True)
    finally:
        database.dispose()
    return [t for t in platform_metadata.tables if t not in existing]


if __name__ == "__main__":  # pragma: no cover - an operator's command
    print("created:", ", ".join(create_platform_tables(sys.argv[1])) or "nothing")
