"""Shared pieces of the scheduling drills: a fresh database, replica processes, task rows."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
_MIGRATE = "import sys; from schedule_grpc.store import db; db.migrate(db.make_engine(sys.argv[1]))"


def fresh_database(admin_url: str, name: str) -> str:
    """Drops and creates ``name``, migrates it; returns its psycopg conninfo."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    subprocess.run(
        [sys.executable, "-c", _MIGRATE, sqlalchemy_url(url)],
        check=True,
        cwd=ROOT,
    )
    return url


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlalchemy_url(conninfo: str) -> str:
    p = psycopg.conninfo.conninfo_to_dict(conninfo)
    auth = str(p.get("user") or "postgres") + (f":{p['password']}" if p.get("password") else "")
    return f"postgresql+psycopg://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p['dbname']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def insert_tasks(
    conn: psycopg.Connection[Any], prefix: str, count: int, schedule: str, next_run: datetime, enabled: bool = True
) -> None:
    """``count`` http tasks named prefix-N (their handler is never run by the scheduling engine)."""
    conn.execute(
        """
        INSERT INTO scheduled_tasks (id, name, schedule, timezone, handler, enabled, metadata, next_run, created_at,
            updated_at, retry_max, retry_initial_delay_s, retry_multiplier, retry_max_delay_s, retry_jitter,
            timeout_s, overlap_policy, catchup_window_s, critical)
        SELECT %(p)s || '-id-' || i, %(p)s || '-' || i, %(s)s, 'UTC', 'http', %(e)s, '{"url": "http://127.0.0.1:9/"}',
               %(n)s, now(), now(), 0, 1, 2, 3600, false, 300, 'allow', 3600, false
        FROM generate_series(1, %(c)s) AS i
        """,
        {"p": prefix, "s": schedule, "e": enabled, "n": next_run, "c": count},
    )


def start_replica(conninfo: str, replica_id: str, log: IO[bytes], **env: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "SCHEDULE_DATABASE_URL": sqlalchemy_url(conninfo),
        "SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "SCHEDULE_METRICS_ADDRESS": "off",
        "SCHEDULE_REPLICA_ID": replica_id,
        "SCHEDULE_MIGRATE_ON_START": "false",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "server.py")], cwd=ROOT, env=environment, stdout=log, stderr=log
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def next_minute(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


def sleep_until(instant: datetime) -> None:
    delay = (instant - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def percentiles(samples: list[float]) -> tuple[float, float, float, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return at(0.50), at(0.95), at(0.99), ordered[-1]
