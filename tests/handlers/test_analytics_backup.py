"""update-analytics stores a snapshot of real executions; backup-database makes restorable backups."""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.engine import make_url

from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import Execution, ExecutionStatus, Task, Trigger
from schedule_grpc.handlers.analytics import percentile
from schedule_grpc.handlers.base import HandlerFailed
from schedule_grpc.settings import Settings
from schedule_grpc.store import analytics, backup
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.platform_tables import sessions
from schedule_grpc.store.tasks import TaskStore
from tests.handler_support import context

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _task(engine: Engine, name: str, *, enabled: bool = True) -> Task:
    task = Task(
        id=new_id("task"), name=name, schedule="@hourly", handler="http", enabled=enabled,
        metadata={"url": "http://x"}, timezone="UTC", created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    return TaskStore(engine).insert(task)


def _execution(engine: Engine, task: Task, status: str, minutes_ago: float, duration_ms: int | None) -> None:
    done = NOW - timedelta(minutes=minutes_ago)
    ExecutionStore(engine).insert(
        Execution(
            id=new_id("exec"), task_id=task.id, task_name=task.name, trigger=Trigger.SCHEDULE,
            scheduled_for=done, attempt=1, status=ExecutionStatus(status), due_at=done, created_at=done,
            started_at=done, completed_at=done, duration_ms=duration_ms,
        )
    )  # fmt: skip


def test_percentiles_use_the_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([7], 99) == 7 and percentile([], 50) is None


def test_update_analytics_stores_a_snapshot_of_the_last_hour_and_day(database_url: str, engine: Engine) -> None:
    a, b = _task(engine, "alpha"), _task(engine, "beta", enabled=False)
    for i in range(10):
        _execution(engine, a, "success" if i < 8 else "failed", minutes_ago=5 + i, duration_ms=100 * (i + 1))
    _execution(engine, b, "success", minutes_ago=120, duration_ms=50)
    _execution(engine, b, "failed", minutes_ago=60 * 30, duration_ms=10)  # older than a day: not counted
    with engine.begin() as conn:
        conn.execute(insert(sessions).values(id="s1", user_id="u", created_at=NOW, expires_at=NOW))
    handler = handler_registry(Settings(database_url=database_url)).get("update-analytics")
    assert handler is not None
    result = handler.run(context("update-analytics", at=NOW))
    assert result["tasks"] == {"total": 2, "enabled": 1}
    hour, day = result["executions"]["lastHour"], result["executions"]["lastDay"]
    assert (hour["total"], hour["success"], hour["failed"], hour["successRate"]) == (10, 8, 2, 0.8)
    assert hour["byTask"]["alpha"]["durationMs"] == {"p50": 500, "p95": 1000, "p99": 1000}
    assert "beta" not in hour["byTask"]
    assert day["total"] == 11 and day["byTask"]["beta"]["successRate"] == 1.0
    assert result["tables"]["sessions"] == 1 and result["tables"]["mcp_servers"] == 0
    # a retry of the same occurrence replaces its snapshot; the next occurrence adds one
    handler.run(context("update-analytics", at=NOW))
    handler.run(context("update-analytics", at=NOW + timedelta(hours=1)))
    stored = analytics.snapshots(engine)
    assert [at for at, _ in stored] == [NOW, NOW + timedelta(hours=1)]
    assert stored[0][1]["executions"] == result["executions"]


def _backup_handler(database_url: str, directory: Path, retention: int = 2):  # type: ignore[no-untyped-def]
    settings = Settings(database_url=database_url, backup_dir=str(directory), backup_retention=retention)
    return handler_registry(settings).get("backup-database")


def _seed_sessions(engine: Engine, n: int) -> list[tuple[str, str]]:
    with engine.begin() as conn:
        conn.execute(
            insert(sessions),
            [{"id": f"s{i}", "user_id": f"user-{i}", "created_at": NOW, "expires_at": NOW} for i in range(n)],
        )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(sessions.c.id, sessions.c.user_id).order_by(sessions.c.id))]


def test_sqlite_backup_restores_the_same_data_and_keeps_the_newest(sqlite_url: str, tmp_path: Path) -> None:
    from schedule_grpc.store import db

    engine = db.make_engine(sqlite_url)
    expected = _seed_sessions(engine, 50)
    handler = _backup_handler(sqlite_url, tmp_path / "backups")
    results = [handler.run(context("backup-database", at=NOW + timedelta(days=d))) for d in range(3)]
    engine.dispose()
    latest = Path(results[-1]["file"])
    assert latest.name == "backup-20260303T120000Z.sqlite3" and results[-1]["format"] == "sqlite"
    assert backup.verify(latest) and results[-1]["sha256"] in latest.with_name(latest.name + ".sha256").read_text()
    assert results[-1]["deletedBackups"] == ["backup-20260301T120000Z.sqlite3"]
    assert sorted(p.name for p in (tmp_path / "backups").glob("*.sqlite3")) == [
        "backup-20260302T120000Z.sqlite3",
        "backup-20260303T120000Z.sqlite3",
    ]
    restored = sqlite3.connect(latest)
    assert restored.execute("SELECT id, user_id FROM sessions ORDER BY id").fetchall() == expected
    restored.close()


@pytest.mark.postgres
def test_postgres_backup_is_a_pg_dump_that_restores_the_same_data(postgres_url: str, tmp_path: Path) -> None:
    from schedule_grpc.store import db

    engine = db.make_engine(postgres_url)
    expected = _seed_sessions(engine, 50)
    engine.dispose()
    result = _backup_handler(postgres_url, tmp_path).run(context("backup-database", at=NOW))
    dump = Path(result["file"])
    assert dump.suffix == ".dump" and result["format"] == "pg_dump custom" and backup.verify(dump)
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    url = make_url(postgres_url)
    target = f"restore_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{target}"'))
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", f"--host={url.host}", f"--port={url.port or 5432}",
             f"--username={url.username}", f"--dbname={target}", str(dump)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        restored = create_engine(url.set(database=target))
        with restored.connect() as conn:
            rows = [tuple(r) for r in conn.execute(text("SELECT id, user_id FROM sessions ORDER BY id"))]
        restored.dispose()
        assert rows == expected
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)'))
        admin.dispose()


def test_a_backup_that_cannot_be_made_fails_and_leaves_no_file(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    handler = _backup_handler(url, tmp_path)
    with pytest.raises(HandlerFailed, match="pg_dump failed"):
        handler.run(context("backup-database", at=NOW, timeout_s=20))
    assert list(tmp_path.iterdir()) == []
