"""RPC latency against its floors, on Postgres, one client.

Seeds a database with --tasks tasks and --rows execution rows (default 1,000 and 1,000,000),
starts the server as its own process, then measures in one run:
  RegisterTask, GetTask, GetTaskHistory (limit 50)      through gRPC
  health Check                                          the gRPC floor (no database)
  psycopg INSERT+COMMIT of a task row                    the write floor
  psycopg history SELECT (50 rows, newest first)        the read floor
  psycopg SELECT of one task row by name                 the GetTask floor
and prints p50/p95/p99 of each and each RPC's p95 as a ratio to (gRPC floor + its database floor).

    python scripts/bench_rpc.py [--admin-url postgresql://postgres@127.0.0.1/postgres] [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drill_common import free_port, sqlalchemy_url

ROOT = Path(__file__).resolve().parent.parent
DB = "schedule_bench"


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49], q[94], q[98]


def measure(call: Callable[[int], object], calls: int, warmup: int = 100) -> list[float]:
    for i in range(warmup):
        call(-1 - i)
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def measure_interleaved(
    calls: dict[str, Callable[[int], object]], rounds: int, warmup: int = 100
) -> dict[str, list[float]]:
    """Each callable ``rounds`` times, one call of each in turn; milliseconds per call, by name."""
    for i in range(warmup):
        for call in calls.values():
            call(-1 - i)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call(i)
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples


def seed(admin_url: str, tasks: int, rows: int) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=DB)
    env = {**os.environ, "SCHEDULE_DATABASE_URL": sqlalchemy_url(url)}
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from schedule_grpc.store import db; "
            "db.migrate(db.make_engine(os.environ['SCHEDULE_DATABASE_URL']))",
        ],
        env=env,
        check=True,
    )
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            INSERT INTO scheduled_tasks (id, name, schedule, timezone, handler, enabled, metadata, created_at,
                updated_at, retry_max, retry_initial_delay_s, retry_multiplier, retry_max_delay_s, retry_jitter,
                timeout_s, overlap_policy, catchup_window_s, critical)
            SELECT 'task-seed-' || lpad(i::text, 6, '0'), 'seed-' || i, (i %% 60) || ' * * * *', 'UTC', 'http', true,
                   '{"url": "http://127.0.0.1:9/"}', now(), now(), 5, 1, 2, 3600, false, 300, 'skip', 3600, false
            FROM generate_series(1, %s) AS i
            """,
            (tasks,),
        )
        conn.execute(
            """
            INSERT INTO task_executions (id, task_id, task_name, trigger, scheduled_for, attempt, status, due_at,
                created_at, started_at, completed_at, duration_ms, result)
            SELECT 'exec-' || lpad(to_hex(i), 32, '0'), 'task-seed-' || lpad((i %% %s + 1)::text, 6, '0'),
                   'seed-' || (i %% %s + 1), 'schedule', ts, 1, 'success', ts, ts, ts, ts + interval '5 ms', 5,
                   '{"deleted": 1}'
            FROM (SELECT i, now() - (i || ' seconds')::interval AS ts FROM generate_series(1, %s) AS i) AS s
            """,
            (tasks, tasks, rows),
        )
        conn.execute("ANALYZE")
    print(f"seeded {tasks} tasks and {rows} executions in {time.perf_counter() - started:.1f}s")
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2000)
    options = parser.parse_args()

    url = seed(options.admin_url, options.tasks, options.rows)
    port = free_port()
    env = {
        **os.environ,
        "SCHEDULE_DATABASE_URL": sqlalchemy_url(url),
        "SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SCHEDULE_METRICS_ADDRESS": "off",
        "SCHEDULE_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([sys.executable, str(ROOT / "server.py")], env=env)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = pb_grpc.ScheduleServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        run_id = uuid.uuid4().hex[:8]
        names = [f"seed-{i}" for i in range(1, options.tasks + 1)]
        rng = random.Random(1)

        def register(i: int) -> object:
            request = pb.RegisterTaskRequest(name=f"bench-{run_id}-{i}", schedule="*/5 * * * *", handler="http")
            request.metadata.update({"url": "http://127.0.0.1:9/"})
            return stub.RegisterTask(request)

        with psycopg.connect(url) as conn:

            def insert(i: int) -> object:
                conn.execute(
                    "INSERT INTO scheduled_tasks (id, name, schedule, timezone, handler, enabled, metadata,"
                    " created_at, updated_at, retry_max, retry_initial_delay_s, retry_multiplier,"
                    " retry_max_delay_s, retry_jitter, timeout_s, overlap_policy, catchup_window_s, critical)"
                    " VALUES (%s, %s, '*/5 * * * *', 'UTC', 'http', true, '{}', now(), now(), 5, 1, 2, 3600,"
                    " false, 300, 'skip', 3600, false)",
                    (f"task-floor-{run_id}-{i}", f"floor-{run_id}-{i}"),
                )
                conn.commit()
                return None

            def history(_: int) -> object:
                task_id = f"task-seed-{rng.randint(1, options.tasks):06d}"
                rows = conn.execute(
                    "SELECT * FROM scheduled_tasks WHERE name = %s", (task_id.replace("task-seed-", "seed-"),)
                ).fetchall()
                rows += conn.execute(
                    "SELECT * FROM task_executions WHERE task_id = %s ORDER BY id DESC LIMIT 51", (task_id,)
                ).fetchall()
                conn.commit()
                return rows

            def task_row(_: int) -> object:
                rows = conn.execute("SELECT * FROM scheduled_tasks WHERE name = %s", (rng.choice(names),)).fetchall()
                conn.commit()
                return rows

            # Interleaved, one call of each in turn: a busy machine slows the RPCs and their floors alike,
            # so the ratios hold even where the absolute figures move.
            results = measure_interleaved(
                {
                    "health Check (gRPC floor)": lambda _: health.Check(health_pb2.HealthCheckRequest()),
                    "RegisterTask": register,
                    "GetTask": lambda _: stub.GetTask(pb.GetTaskRequest(name=rng.choice(names))),
                    "GetTaskHistory": lambda _: stub.GetTaskHistory(
                        pb.GetTaskHistoryRequest(name=rng.choice(names), limit=50)
                    ),
                    "psycopg INSERT+COMMIT (write floor)": insert,
                    "psycopg task SELECT (get floor)": task_row,
                    "psycopg history SELECT (read floor)": history,
                },
                options.calls,
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    print(f"\n{options.calls} calls each, one client, Postgres, {options.rows:,} execution rows")
    print(f"{'':40} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    p95 = {}
    for name, samples in results.items():
        p50, p95[name], p99 = percentiles(samples)
        print(f"{name:40} {p50:8.3f} {p95[name]:8.3f} {p99:8.3f}")
    grpc_floor = p95["health Check (gRPC floor)"]
    print("\np95 ratios (aim: at most 1.5)")
    for rpc, floor in [
        ("RegisterTask", "psycopg INSERT+COMMIT (write floor)"),
        ("GetTaskHistory", "psycopg history SELECT (read floor)"),
        ("GetTask", "psycopg task SELECT (get floor)"),
    ]:
        print(f"  {rpc:16} / (gRPC floor + {floor.split(' (')[0]}) = {p95[rpc] / (grpc_floor + p95[floor]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
