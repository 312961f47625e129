"""Fire lateness, one run: the same --tasks (default 1,000) due at one instant, fired by three schedulers.

  ours    a real server process (python server.py) on a fresh Postgres database: webhook tasks of the
          built-in http handler, posting to a loopback HTTP receiver; lateness = receipt time minus the
          scheduled instant (X-Schedule-Scheduled-For). Also the execution rows' started_at.
  bare    APScheduler 3 with its CronTrigger and SQLAlchemyJobStore on the same Postgres, its default
          thread pool, a no-op job recording when it started (scripts/bench_firing.py's bare variant).
  celery  Celery beat + one Celery worker (prefork, --concurrency) as subprocesses on the local Redis,
          a crontab entry per task all due at one minute; each task POSTs to the same receiver.
Each runs alone at its own minute boundary (2 cores: running them at once would measure contention).
Floors measured in the same run: a psycopg SELECT 1 and one POST to the receiver. Prints p50 / p95 /
max and the ratios ours/bare and ours/celery; writes docs/compare.png. Bounded (about 4 minutes);
loopback only; the database is dropped and the Redis queue deleted at the end.

    python scripts/compare.py [--tasks 1000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_firing import bare_burst
from drill_common import (
    Processes,
    Receiver,
    drop_database,
    exit_on_sigterm,
    free_port,
    fresh_database,
    insert_tasks,
    next_minute,
    replica_env,
    sleep_until,
    start_replica,
    wait_log_line,
)
from perf_plot import ecdf, pyplot, save
from perf_stats import Summary, ratio

DB = "schedule_compare"
HERE = Path(__file__).resolve().parent


def lateness(receiver: Receiver, prefix: str) -> list[float]:
    return [
        at - datetime.fromisoformat(headers["X-Schedule-Scheduled-For"]).timestamp()
        for at, headers in list(receiver.received)
        if headers.get("X-Schedule-Task", "").startswith(prefix)
    ]


def wait_receipts(receiver: Receiver, prefix: str, want: int, until: datetime) -> None:
    while datetime.now(UTC) < until and len(lateness(receiver, prefix)) < want:
        time.sleep(0.1)


def ours(
    conninfo: str, receiver: Receiver, tasks: int, concurrency: int, logs: Path
) -> tuple[list[float], list[float]]:
    due = next_minute(datetime.now(UTC) + timedelta(seconds=25))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        insert_tasks(conn, "ours", tasks, f"{due.minute} {due.hour} * * *", due)
        conn.execute("UPDATE scheduled_tasks SET metadata = %s::jsonb", (f'{{"url": "{receiver.url}"}}',))
    with Processes() as procs, open(logs / "ours.log", "wb") as log:
        env = replica_env(free_port(), SCHEDULE_EXECUTOR_CONCURRENCY=str(concurrency))
        procs.add(start_replica(conninfo, "ours", log, **env))
        if wait_log_line(logs / "ours.log", '"message": "leading"', 20) is None:
            raise RuntimeError(f"our replica did not lead; see {logs / 'ours.log'}")
        sleep_until(due)
        wait_receipts(receiver, "ours-", tasks, due + timedelta(seconds=60))
    with psycopg.connect(conninfo) as conn:
        started = [
            (r[0] - due).total_seconds()
            for r in conn.execute(
                "SELECT started_at FROM task_executions WHERE scheduled_for = %s AND started_at IS NOT NULL", (due,)
            )
        ]
    return lateness(receiver, "ours-"), started


def celery(receiver: Receiver, tasks: int, concurrency: int, logs: Path) -> list[float]:
    import redis

    queue = f"compare-{uuid.uuid4().hex[:8]}"
    broker = "redis://127.0.0.1:6379/11"
    due = next_minute(datetime.now(UTC) + timedelta(seconds=25))
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "COMPARE_BROKER": broker,
        "COMPARE_QUEUE": queue,
        "COMPARE_URL": receiver.url,
        "COMPARE_DUE": due.isoformat(),
        "COMPARE_TASKS": str(tasks),
    }
    celery_bin = str(Path(sys.executable).parent / "celery")
    with tempfile.TemporaryDirectory() as tmp, Processes() as procs:
        with open(logs / "celery-worker.log", "wb") as worker_log, open(logs / "celery-beat.log", "wb") as beat_log:
            procs.add(
                subprocess.Popen(
                    [
                        celery_bin,
                        "-A",
                        "compare_celery",
                        "worker",
                        "--pool",
                        "prefork",
                        "--concurrency",
                        str(concurrency),
                        "--without-heartbeat",
                        "--without-mingle",
                        "--without-gossip",
                        "-l",
                        "warning",
                    ],
                    env=env,
                    cwd=tmp,
                    stdout=worker_log,
                    stderr=worker_log,
                )
            )
            procs.add(
                subprocess.Popen(
                    [
                        celery_bin,
                        "-A",
                        "compare_celery",
                        "beat",
                        "-s",
                        str(Path(tmp) / "beat-schedule"),
                        "-l",
                        "warning",
                    ],
                    env=env,
                    cwd=tmp,
                    stdout=beat_log,
                    stderr=beat_log,
                )
            )
            sleep_until(due)
            wait_receipts(receiver, "celery-", tasks, due + timedelta(seconds=60))
        connection = redis.Redis.from_url(broker)
        connection.delete(queue)
        connection.close()
    return lateness(receiver, "celery-")


def floors(conninfo: str, receiver: Receiver, n: int = 200) -> dict[str, list[float]]:
    select: list[float] = []
    post: list[float] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            select.append(time.perf_counter() - t0)
    for _ in range(n):
        t0 = time.perf_counter()
        request = urllib.request.Request(receiver.url, data=b"{}", method="POST", headers={"X-Schedule-Task": "floor"})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        post.append(time.perf_counter() - t0)
    return {"psycopg SELECT 1": select, "POST to the receiver": post}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4, help="our executor's and Celery's worker processes")
    parser.add_argument("--logs", default="/tmp/compare")
    options = parser.parse_args()
    tasks, concurrency = min(max(options.tasks, 10), 5000), min(max(options.concurrency, 1), 32)
    exit_on_sigterm()
    logs = Path(options.logs)
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[float]] = {}
    notes: list[str] = []
    conninfo = fresh_database(options.admin_url, DB)
    try:
        with Receiver() as receiver:
            base = floors(conninfo, receiver)
            print(f"{tasks} tasks due at one instant; our executor and Celery's worker: {concurrency} processes")
            results["ours (webhook receipt)"], results["ours (execution started)"] = ours(
                conninfo, receiver, tasks, concurrency, logs
            )
            print("ours done", flush=True)
            results["bare APScheduler 3 (job started)"] = bare_burst(
                conninfo, tasks, next_minute(datetime.now(UTC) + timedelta(seconds=20))
            )
            print("bare APScheduler done", flush=True)
            try:
                results["Celery beat + worker (webhook receipt)"] = celery(receiver, tasks, concurrency, logs)
            except (ImportError, OSError) as error:
                notes.append(f"Celery could not run: {error}")
    finally:
        drop_database(options.admin_url, DB)

    print()
    for name, samples in {**base, **results}.items():
        summary = Summary.of(samples)
        print(f"{name:42} {summary.line() if summary else 'no samples'}")
    for note in notes:
        print(note)
    mine = Summary.of(results["ours (webhook receipt)"])
    started = Summary.of(results["ours (execution started)"])
    for peer in ("bare APScheduler 3 (job started)", "Celery beat + worker (webhook receipt)"):
        other = Summary.of(results.get(peer, []))
        if mine and other:
            print(
                f"ratio ours/{peer.split(' (')[0]}: p50 {ratio(mine.p50, other.p50)}  "
                f"p95 {ratio(mine.p95, other.p95)}  "
                f"max {ratio(mine.max, other.max)}"
            )
            if started and peer.startswith("bare"):
                print(
                    f"  like for like (ours started / bare started): p50 {ratio(started.p50, other.p50)}  "
                    f"p95 {ratio(started.p95, other.p95)}  max {ratio(started.max, other.max)}"
                )
    counts = {name: len(samples) for name, samples in results.items()}
    print(f"samples per scheduler (want {tasks} each): {counts}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    ecdf(ax, results, "lateness after the scheduled instant (ms)", f"{tasks} tasks due at one instant")
    print(f"figure: {save(fig, 'compare.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
