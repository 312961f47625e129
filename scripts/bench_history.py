"""History queries at scale: p95 of a 50-row page on 1,000,000 executions against the index-only floor.

Seeds a Postgres database with --tasks tasks and --rows finished executions (90 days, 1 in 10 failed;
triggers off while seeding, so no events), starts the server as its own process, and measures in one
run, --calls calls each, one client:

  health Check                                      the gRPC floor (no database)
  index-only SELECT of 50 (created_at, id) keys     the database floor (Index Only Scan, newest first)
  SELECT of the 50 whole rows                       what a page costs in the database
  GetTaskHistory limit 50                           first page; a later page (cursor); status + 30-day range
  GetRecentExecutions limit 50                      all tasks; failed only

It prints p50/p95/p99 of each and every RPC's p95 as a ratio to (gRPC floor + index-only floor).

    python scripts/bench_history.py [--admin-url postgresql://postgres@127.0.0.1/postgres] [--calls 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psycopg
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.store import db

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rpc import measure, percentiles
from drill_common import free_port, sqlalchemy_url

ROOT = Path(__file__).resolve().parent.parent
DB = "schedule_bench_history"
PAGE_SQL = "SELECT {columns} FROM task_executions WHERE task_id = %s ORDER BY created_at DESC, id DESC LIMIT 51"


def seed(admin_url: str, tasks: int, rows: int) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=DB)
    database = db.make_engine(sqlalchemy_url(url))
    db.migrate(database)
    database.dispose()
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")  # seeding is not an execution: no events
        conn.execute(
            """
            INSERT INTO scheduled_tasks (id, name, schedule, timezone, handler, enabled, metadata, created_at,
                updated_at, retry_max, retry_initial_delay_s, retry_multiplier, retry_max_delay_s, retry_jitter,
                timeout_s, overlap_policy, catchup_window_s, critical)
            SELECT 'task-seed-' || lpad(i::text, 6, '0'), 'seed-' || i, '*/5 * * * *', 'UTC', 'http', true,
                   '{"url": "http://127.0.0.1:9/"}', now(), now(), 5, 1, 2, 3600, false, 300, 'skip', 3600, false
            FROM generate_series(1, %s) AS i
            """,
            (tasks,),
        )
        # execution i belongs to task i % tasks; 90 days of history, newest last; every 10th failed
        conn.execute(
            """
            INSERT INTO task_executions (id, task_id, task_name, trigger, scheduled_for, attempt, status, due_at,
                created_at, started_at, completed_at, duration_ms, result, error)
            SELECT 'exec-' || lpad(to_hex(i), 32, '0'), 'task-seed-' || lpad((i %% %(t)s + 1)::text, 6, '0'),
                   'seed-' || (i %% %(t)s + 1), 'schedule', ts, 1,
                   CASE WHEN i %% 10 = 0 THEN 'failed' ELSE 'success' END, ts, ts, ts, ts + interval '5 ms', 5,
                   CASE WHEN i %% 10 = 0 THEN NULL ELSE '{"deleted": 1}'::jsonb END,
                   CASE WHEN i %% 10 = 0 THEN 'HandlerFailed: boom' END
            FROM (SELECT i, now() - interval '90 days' + (i * interval '90 days' / %(n)s) AS ts
                  FROM generate_series(1, %(n)s) AS i) AS s
            """,
            {"t": tasks, "n": rows},
        )
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # the visibility map that index-only scans need
    print(f"seeded {tasks:,} tasks and {rows:,} executions in {time.perf_counter() - started:.1f}s")
    return url


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=1000)
    options = parser.parse_args()

    url = seed(options.admin_url, options.tasks, options.rows)
    port = free_port()
    env = {
        **os.environ,
        "SCHEDULE_DATABASE_URL": sqlalchemy_url(url),
        "SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SCHEDULE_METRICS_ADDRESS": "off",
        "SCHEDULE_RETENTION_SCHEDULE": "",
        "SCHEDULE_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([sys.executable, str(ROOT / "server.py")], env=env)
    rng = random.Random(7)
    names = [f"seed-{i}" for i in range(1, options.tasks + 1)]
    results: dict[str, list[float]] = {}
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = pb_grpc.ScheduleServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        month_ago = datetime.now(UTC) - timedelta(days=30)
        tokens = [
            stub.GetTaskHistory(pb.GetTaskHistoryRequest(name=name, limit=50)).next_page_token for name in names[:200]
        ]
        assert all(tokens), "every seeded task has more than one page"

        results["health Check (gRPC floor)"] = measure(
            lambda _: health.Check(health_pb2.HealthCheckRequest()), options.calls
        )
        results["GetTaskHistory first page"] = measure(
            lambda _: stub.GetTaskHistory(pb.GetTaskHistoryRequest(name=rng.choice(names), limit=50)), options.calls
        )
        results["GetTaskHistory next page"] = measure(
            lambda i: stub.GetTaskHistory(
                pb.GetTaskHistoryRequest(name=names[i % 200], limit=50, page_token=tokens[i % 200])
            ),
            options.calls,
        )
        results["GetTaskHistory failed, 30 days"] = measure(
            lambda _: stub.GetTaskHistory(
                pb.GetTaskHistoryRequest(
                    name=rng.choice(names),
                    limit=50,
                    statuses=[pb.EXECUTION_STATUS_FAILED],
                    start_time=_ts(month_ago),
                )
            ),
            options.calls,
        )
        results["GetRecentExecutions"] = measure(
            lambda _: stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(limit=50)), options.calls
        )
        results["GetRecentExecutions failed"] = measure(
            lambda _: stub.GetRecentExecutions(
                pb.GetRecentExecutionsRequest(limit=50, statuses=[pb.EXECUTION_STATUS_FAILED])
            ),
            options.calls,
        )
        with psycopg.connect(url, autocommit=True) as conn:
            task_id = "task-seed-000001"
            plan = conn.execute("EXPLAIN " + PAGE_SQL.format(columns="created_at, id"), (task_id,)).fetchall()
            assert any("Index Only Scan" in row[0] for row in plan), plan
            results["index-only SELECT (DB floor)"] = measure(
                lambda _: conn.execute(
                    PAGE_SQL.format(columns="created_at, id"), (f"task-seed-{rng.randint(1, options.tasks):06d}",)
                ).fetchall(),
                options.calls,
            )
            results["whole-row SELECT"] = measure(
                lambda _: conn.execute(
                    PAGE_SQL.format(columns="*"), (f"task-seed-{rng.randint(1, options.tasks):06d}",)
                ).fetchall(),
                options.calls,
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        with psycopg.connect(options.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')

    print(f"\n{options.calls} calls each, one client, Postgres, {options.rows:,} executions, 50-row pages")
    print(f"{'':34} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    p95 = {}
    for name, samples in results.items():
        p50, p95[name], p99 = percentiles(samples)
        print(f"{name:34} {p50:8.3f} {p95[name]:8.3f} {p99:8.3f}")
    floor = p95["health Check (gRPC floor)"] + p95["index-only SELECT (DB floor)"]
    print(f"\np95 / (gRPC floor + index-only floor = {floor:.3f} ms)")
    for name in results:
        if name.startswith("Get"):
            print(f"  {name:32} {p95[name] / floor:.2f}")
    print(f"  {'whole-row SELECT / index-only':32} {p95['whole-row SELECT'] / p95['index-only SELECT (DB floor)']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
