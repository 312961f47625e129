"""Fire lateness of the scheduling engine against bare APScheduler 3, on the same Postgres, in one run.

Lateness = when the occurrence was acted on minus its scheduled instant:
  ours  the execution row's started_at when an executor started it, else its created_at (the instant
        the occurrence was handed on to the executor's queue); the output says which was measured;
  bare  APScheduler 3 with its own CronTrigger and SQLAlchemyJobStore on the same database, a no-op
        job recording the instant it actually started.
Two cases, each printed as p50/p95/p99/max and as ratios ours/bare:
  1 task     --rounds instants of one task. To keep the run short the instants are injected half a
             second apart (ours: the task's next_run is set and announced, as an update would be;
             bare: the job's next_run_time is modified) instead of waiting for minute boundaries.
  1000 tasks '* * * * *' tasks all due at the same minute boundary.
Bounded (about 3-4 minutes); ours runs as a real server process; only loopback Postgres is used.

    python scripts/bench_firing.py [--rounds 30] [--tasks 1000] [--admin-url postgresql://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drill_common import (
    drop_database,
    fresh_database,
    insert_tasks,
    next_minute,
    percentiles,
    sleep_until,
    sqlalchemy_url,
    start_replica,
    stop,
)

DB = "schedule_bench_firing"
SPACING = timedelta(milliseconds=500)
_bare_lock = threading.Lock()
_bare_samples: list[float] = []


def bare_job(scheduled_ts: float) -> None:
    """The bare APScheduler no-op job: records how late it started."""
    late = time.time() - scheduled_ts
    with _bare_lock:
        _bare_samples.append(late)


def _take_bare() -> list[float]:
    with _bare_lock:
        samples = list(_bare_samples)
        _bare_samples.clear()
    return samples


def ours(conninfo: str, rounds: int, tasks: int, log: Any) -> tuple[list[float], list[float], str]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        insert_tasks(conn, "one", 1, "* * * * *", next_minute(datetime.now(UTC)) + timedelta(hours=1))
    replica = start_replica(conninfo, "bench", log, SCHEDULE_LOG_LEVEL="WARNING")
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            _wait_leader(conn)
            instants = []
            for _ in range(rounds):
                instant = (datetime.now(UTC) + SPACING).replace(microsecond=0) + timedelta(milliseconds=500)
                with conn.transaction():
                    conn.execute("UPDATE scheduled_tasks SET next_run = %s WHERE name = 'one-1'", (instant,))
                    conn.execute("SELECT pg_notify('schedule_task_changes', 'one-1')")
                instants.append(instant)
                sleep_until(instant + SPACING)
            time.sleep(1)
            one, measured = _lateness(conn, "one-1", instants)
            conn.execute("UPDATE scheduled_tasks SET enabled = false, next_run = NULL WHERE name = 'one-1'")
            conn.execute("SELECT pg_notify('schedule_task_changes', 'one-1')")
            boundary = next_minute(datetime.now(UTC) + timedelta(seconds=20))
            with conn.transaction():
                insert_tasks(conn, "bulk", tasks, "* * * * *", boundary)
                conn.execute(
                    "SELECT pg_notify('schedule_task_changes', name) FROM scheduled_tasks WHERE name LIKE 'bulk-%%'"
                )
            sleep_until(boundary + timedelta(seconds=5))
            many, _ = _lateness(conn, "bulk-%", [boundary])
    finally:
        stop(replica)
    return one, many, measured


def _wait_leader(conn: psycopg.Connection[Any]) -> None:
    for _ in range(200):
        if conn.execute("SELECT count(*) FROM leader_epochs").fetchone()[0]:  # type: ignore[index]
            time.sleep(0.5)  # promotion finishes its reconciliation
            return
        time.sleep(0.05)
    raise RuntimeError("the replica did not become leader")


def _lateness(conn: psycopg.Connection[Any], pattern: str, instants: list[datetime]) -> tuple[list[float], str]:
    rows = conn.execute(
        "SELECT scheduled_for, started_at, created_at FROM task_executions"
        " WHERE task_name LIKE %s AND scheduled_for = ANY(%s)",
        (pattern, instants),
    ).fetchall()
    started = all(r[1] is not None for r in rows) and rows
    measured = "started_at - scheduled_for" if started else "created_at - scheduled_for (handed on)"
    return [((r[1] if started else r[2]) - r[0]).total_seconds() for r in rows], measured


def bare(conninfo: str, rounds: int, tasks: int) -> tuple[list[float], list[float]]:
    store = SQLAlchemyJobStore(url=sqlalchemy_url(conninfo), tablename="bare_jobs")
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    scheduler.start()
    try:
        trigger = CronTrigger.from_crontab("* * * * *", timezone=UTC)
        far = next_minute(datetime.now(UTC)) + timedelta(hours=1)
        scheduler.add_job(
            bare_job, trigger, id="one", args=[far.timestamp()], next_run_time=far, misfire_grace_time=None
        )
        for _ in range(rounds):
            instant = (datetime.now(UTC) + SPACING).replace(microsecond=0) + timedelta(milliseconds=500)
            scheduler.modify_job("one", next_run_time=instant, args=[instant.timestamp()])
            sleep_until(instant + SPACING)
        time.sleep(1)
        scheduler.remove_job("one")
        one = _take_bare()
    finally:
        scheduler.shutdown(wait=True)
    return one, bare_burst(conninfo, tasks, next_minute(datetime.now(UTC) + timedelta(seconds=20)))


def bare_burst(conninfo: str, tasks: int, boundary: datetime, tablename: str = "bare_jobs") -> list[float]:
    """Bare APScheduler 3 (CronTrigger, SQLAlchemyJobStore, default thread pool): ``tasks`` no-op jobs due at
    ``boundary``; how late each started, in seconds. Returns 5 s after the boundary."""
    store = SQLAlchemyJobStore(url=sqlalchemy_url(conninfo), tablename=tablename)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    scheduler.start()
    try:
        trigger = CronTrigger.from_crontab("* * * * *", timezone=UTC)
        for i in range(tasks):
            scheduler.add_job(
                bare_job, trigger, id=f"bulk-{i}", args=[boundary.timestamp()], next_run_time=boundary,
                misfire_grace_time=None,  # the default (1 s) would drop late ones without a trace
            )  # fmt: skip
        sleep_until(boundary + timedelta(seconds=5))
        return _take_bare()
    finally:
        scheduler.remove_all_jobs()
        scheduler.shutdown(wait=True)


def _row(label: str, samples: list[float]) -> str:
    if not samples:
        return f"{label:<22} no samples"
    p50, p95, p99, top = percentiles(samples)
    figures = "  ".join(
        f"{name} {value * 1000:8.1f}"
        for name, value in zip(("p50", "p95", "p99", "max"), (p50, p95, p99, top), strict=True)
    )
    return f"{label:<22} n={len(samples):<5} {figures} ms"


def _ratio(a: list[float], b: list[float]) -> str:
    if not a or not b:
        return "n/a"
    pa, pb = percentiles(a), percentiles(b)
    return "  ".join(
        f"{name} {x / y:5.2f}" if y > 0 else f"{name} n/a"
        for name, x, y in zip(("p50", "p95", "p99", "max"), pa, pb, strict=True)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--log", default="/tmp/bench_firing.log")
    options = parser.parse_args()
    rounds, tasks = min(max(options.rounds, 5), 200), min(max(options.tasks, 1), 5000)

    conninfo = fresh_database(options.admin_url, DB)
    try:
        with open(options.log, "wb") as log:
            our_one, our_many, measured = ours(conninfo, rounds, tasks, log)
        bare_one, bare_many = bare(conninfo, rounds, tasks)
    finally:
        drop_database(options.admin_url, DB)
    print(f"ours measured as {measured}; bare as the job's actual start - scheduled instant")
    print(_row("ours, 1 task", our_one))
    print(_row("bare, 1 task", bare_one))
    print(_row(f"ours, {tasks} tasks", our_many))
    print(_row(f"bare, {tasks} tasks", bare_many))
    print(f"ratio ours/bare, 1 task:       {_ratio(our_one, bare_one)}")
    print(f"ratio ours/bare, {tasks} tasks: {_ratio(our_many, bare_many)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
