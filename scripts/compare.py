"""Webhook lateness, one run: the same webhooks due at one instant, fired by each scheduler, against a floor.

Scenarios (each scheduler alone at its own instant; 2 cores: running them at once would measure contention):

  burst   --tasks (default 1,000) webhooks due at one instant; the receiver answers at once.
  slow    --slow-tasks (default 200) webhooks whose receiver takes 2 s to answer.
  scale   --scale-tasks (default 10,000) webhooks due at one instant on 2 replicas of ours: lateness,
          and how many were received twice (doubled) or never (lost).

Schedulers:

  floor           a bare asyncio client (aiohttp, scripts/compare_floor.py, its own process) posting the
                  same webhooks at once at the instant: the cost of the POSTs themselves.
  ours            real server processes (python server.py) on a fresh Postgres database; http tasks on the
                  remote lane; SCHEDULE_EGRESS_ALLOW lets them reach the loopback receiver. Also the
                  replica's CPU (process tree, from /proc) per webhook.
  bare            APScheduler 3: CronTrigger, SQLAlchemyJobStore on the same Postgres, its default thread
                  pool (10 threads) doing the POST (urllib).
  celery-prefork  Celery beat + worker, --pool prefork --concurrency 4 (Redis at 127.0.0.1:6379).
  celery-threads  Celery beat + worker, --pool threads --concurrency 100.

Lateness = receipt time at the receiver (scripts/webhook_receiver.py, its own process) minus the
scheduled instant. Prints p50 / p95 / max per scheduler, the ratios ours/floor, ours/bare and
ours/celery, writes docs/compare.png. Bounded (about 15 minutes for everything; each wait has a
deadline); loopback only; the database is dropped and the Redis queues deleted at the end.

    python scripts/compare.py [--scenarios burst,slow,scale] [--peers floor,ours,bare,celery-prefork,celery-threads]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drill_common import (
    Processes,
    drop_database,
    exit_on_sigterm,
    free_port,
    fresh_database,
    insert_tasks,
    next_minute,
    replica_env,
    sleep_until,
    sqlalchemy_url,
    start_replica,
    wait_log_line,
)
from perf_plot import ecdf, pyplot, save
from perf_stats import Summary, ratio
from webhook_receiver import Receipt, Receiver, post

DB = f"schedule_compare_{os.getpid()}"  # several runs at once must not drop each other's database
HERE = Path(__file__).resolve().parent
PEERS = ("floor", "ours", "bare", "celery-prefork", "celery-threads")
SCENARIOS = ("burst", "slow", "scale")
LEAD_S = 25  # seconds between setting a scheduler up and its instant


@dataclass
class Run:
    """What one scheduler did in one scenario."""

    expected: int
    receipts: list[Receipt] = field(default_factory=list)
    cpu_s: float | None = None
    note: str = ""

    @property
    def lateness(self) -> list[float]:
        return [at - datetime.fromisoformat(scheduled).timestamp() for at, scheduled, _, _ in self.receipts]

    @property
    def doubled(self) -> int:
        return sum(n - 1 for n in Counter(key for _, _, _, key in self.receipts).values() if n > 1)

    @property
    def lost(self) -> int:
        return self.expected - len({key for _, _, _, key in self.receipts})


def wait_receipts(receiver: Receiver, prefix: str, want: int, until: datetime) -> list[Receipt]:
    while True:
        got = receiver.receipts(prefix)
        if len(got) >= want or datetime.now(UTC) >= until:
            return got
        time.sleep(0.25)


def _clk() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system, with reaped children) of process ``root`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = sum(int(x) for x in fields[11:15]) / _clk()
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += cpu.get(pid, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total


# --- the schedulers -------------------------------------------------------------------------------


def run_floor(receiver: Receiver, url: str, prefix: str, tasks: int, connections: int, wait_s: float) -> Run:
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    command = [sys.executable, str(HERE / "compare_floor.py"), "--url", url, "--due", due.isoformat()]
    command += ["--tasks", str(tasks), "--prefix", prefix, "--connections", str(connections)]
    with Processes() as procs:
        child = procs.add(subprocess.Popen(command))
        receipts = wait_receipts(receiver, f"{prefix}-", tasks, due + timedelta(seconds=wait_s))
        child.wait(timeout=max(1.0, wait_s))
    return Run(tasks, receipts, note=f"{connections} connections")


def run_ours(
    conninfo: str, receiver: Receiver, url: str, prefix: str, tasks: int, replicas: int, logs: Path, wait_s: float
) -> Run:
    due = next_minute(datetime.now(UTC) + timedelta(seconds=LEAD_S))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM scheduled_tasks")
        insert_tasks(conn, prefix, tasks, f"{due.minute} {due.hour} * * *", due)
        conn.execute(
            "UPDATE scheduled_tasks SET metadata = %s::jsonb, timeout_s = 60 WHERE name LIKE %s",
            (f'{{"url": "{url}"}}', f"{prefix}-%"),
        )
    with Processes() as procs:
        paths = [logs / f"{prefix}-{i}.log" for i in range(replicas)]
        children = []
        for i, path in enumerate(paths):
            env = replica_env(free_port(), SCHEDULE_EGRESS_ALLOW="127.0.0.0/8")
            with open(path, "wb") as log:
                children.append(procs.add(start_replica(conninfo, f"{prefix}-{i}", log, **env)))
        deadline = time.monotonic() + 30
        while not any(wait_log_line(p, '"message": "leading"', 0.2) for p in paths):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no replica of ours led; see {paths}")
        sleep_until(due - timedelta(seconds=2))
        before = sum(tree_cpu_s(c.pid) for c in children)
        receipts = wait_receipts(receiver, f"{prefix}-", tasks, due + timedelta(seconds=wait_s))
        time.sleep(1)  # the last executions are recorded
        cpu = sum(tree_cpu_s(c.pid) for c in children) - before
        receipts = receiver.receipts(f"{prefix}-")
    return Run(tasks, receipts, cpu_s=cpu, note=f"{replicas} replica(s)")


def bare_post(url: str, scheduled_for: str, task: str) -> None:
    post(url, scheduled_for, task)


def run_bare(conninfo: str, receiver: Receiver, url: str, prefix: str, tasks: int, wait_s: float) -> Run:
    due = next_minute(datetime.now(UTC) + timedelta(seconds=LEAD_S))
    store = SQLAlchemyJobStore(url=sqlalchemy_url(conninfo), tablename=f"bare_{prefix.replace('-', '_')}")
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    scheduler.start()
    try:
        trigger = CronTrigger.from_crontab(f"{due.minute} {due.hour} * * *", timezone=UTC)
        for i in range(1, tasks + 1):
            scheduler.add_job(
                bare_post, trigger, id=f"{prefix}-{i}", args=[url, due.isoformat(), f"{prefix}-{i}"],
                next_run_time=due, misfire_grace_time=None,  # the default (1 s) would drop late ones silently
            )  # fmt: skip
        receipts = wait_receipts(receiver, f"{prefix}-", tasks, due + timedelta(seconds=wait_s))
    finally:
        scheduler.remove_all_jobs()
        scheduler.shutdown(wait=False)
    return Run(tasks, receipts, note="default thread pool (10)")


def run_celery(receiver: Receiver, url: str, prefix: str, tasks: int, pool: str, logs: Path, wait_s: float) -> Run:
    import redis

    concurrency = "4" if pool == "prefork" else "100"
    queue = f"compare-{uuid.uuid4().hex[:8]}"
    broker = "redis://127.0.0.1:6379/11"
    due = next_minute(datetime.now(UTC) + timedelta(seconds=LEAD_S))
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "COMPARE_BROKER": broker,
        "COMPARE_QUEUE": queue,
        "COMPARE_URL": url,
        "COMPARE_PREFIX": prefix,
        "COMPARE_DUE": due.isoformat(),
        "COMPARE_TASKS": str(tasks),
    }
    celery_bin = str(Path(sys.executable).parent / "celery")
    worker = [celery_bin, "-A", "compare_celery", "worker", "--pool", pool, "--concurrency", concurrency]
    worker += ["--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning"]
    with tempfile.TemporaryDirectory() as tmp, Processes() as procs:
        beat = [celery_bin, "-A", "compare_celery", "beat", "-s", str(Path(tmp) / "beat-schedule"), "-l", "warning"]
        with (
            open(logs / f"{prefix}-worker.log", "wb") as worker_log,
            open(logs / f"{prefix}-beat.log", "wb") as beat_log,
        ):
            procs.add(subprocess.Popen(worker, env=env, cwd=tmp, stdout=worker_log, stderr=worker_log))
            procs.add(subprocess.Popen(beat, env=env, cwd=tmp, stdout=beat_log, stderr=beat_log))
            receipts = wait_receipts(receiver, f"{prefix}-", tasks, due + timedelta(seconds=wait_s))
        connection = redis.Redis.from_url(broker)
        connection.delete(queue)
        connection.close()
    return Run(tasks, receipts, note=f"--pool {pool} --concurrency {concurrency}")


# --- the report ------------------------------------------------------------------------------------


def report(title: str, runs: dict[str, Run]) -> list[str]:
    lines = [title]
    for name, run in runs.items():
        summary = Summary.of(run.lateness)
        figures = summary.line() if summary else "no samples"
        extra = f"  received {len(run.receipts)}/{run.expected}"
        if run.doubled or run.lost:
            extra += f"  doubled {run.doubled} lost {run.lost}"
        if run.cpu_s is not None and run.receipts:
            extra += f"  replica CPU {run.cpu_s * 1000 / len(run.receipts):.2f} ms/webhook"
        lines.append(f"  {name:15} {figures}{extra}  ({run.note})")
    mine = Summary.of(runs["ours"].lateness) if "ours" in runs else None
    for peer in runs:
        other = Summary.of(runs[peer].lateness)
        if mine and other and peer != "ours":
            lines.append(
                f"  ours/{peer:15} p50 {ratio(mine.p50, other.p50):>6}  p95 {ratio(mine.p95, other.p95):>6}  "
                f"max {ratio(mine.max, other.max):>6}"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--slow-tasks", type=int, default=200)
    parser.add_argument("--scale-tasks", type=int, default=10000)
    parser.add_argument("--floor-connections", type=int, default=100, help="the floor client's pool in the burst")
    parser.add_argument("--logs", default="/tmp/compare")
    options = parser.parse_args()
    scenarios = [s for s in options.scenarios.split(",") if s in SCENARIOS]
    peers = [p for p in options.peers.split(",") if p in PEERS]
    tasks = min(max(options.tasks, 10), 5000)
    slow_tasks = min(max(options.slow_tasks, 10), 1000)
    scale_tasks = min(max(options.scale_tasks, 100), 20000)
    exit_on_sigterm()
    logs = Path(options.logs)
    logs.mkdir(parents=True, exist_ok=True)
    output: list[str] = []
    burst: dict[str, Run] = {}
    conninfo = fresh_database(options.admin_url, DB)
    try:
        with Receiver(slow_s=2.0) as receiver:
            for scenario in scenarios:
                runs: dict[str, Run] = {}
                if scenario == "scale":
                    runs["floor"] = run_floor(receiver, receiver.url, "scale-floor", scale_tasks, 100, 120)
                    runs["ours"] = run_ours(conninfo, receiver, receiver.url, "scale-ours", scale_tasks, 2, logs, 180)
                    lines = report(f"{scale_tasks} webhooks due at one instant, 2 replicas of ours", runs)
                    print("\n".join(lines), flush=True)
                    output += lines
                    continue
                n = tasks if scenario == "burst" else slow_tasks
                url = receiver.url if scenario == "burst" else receiver.slow_url
                wait_s = 60.0 if scenario == "burst" else 120.0
                for peer in peers:
                    prefix = f"{scenario}-{peer}"
                    try:
                        if peer == "floor":
                            connections = options.floor_connections if scenario == "burst" else n
                            runs[peer] = run_floor(receiver, url, prefix, n, connections, wait_s)
                        elif peer == "ours":
                            runs[peer] = run_ours(conninfo, receiver, url, prefix, n, 1, logs, wait_s)
                        elif peer == "bare":
                            runs[peer] = run_bare(conninfo, receiver, url, prefix, n, wait_s)
                        else:
                            pool = peer.removeprefix("celery-")
                            runs[peer] = run_celery(receiver, url, prefix, n, pool, logs, wait_s)
                    except (ImportError, OSError, RuntimeError) as error:
                        print(f"{scenario}/{peer} could not run: {error}", flush=True)
                    else:
                        print(f"{scenario}/{peer}: received {len(runs[peer].receipts)}/{n}", flush=True)
                title = (
                    f"{n} webhooks due at one instant, receiver answers at once"
                    if scenario == "burst"
                    else f"{n} webhooks due at one instant, receiver takes 2 s"
                )
                lines = report(title, runs)
                print("\n".join(lines), flush=True)
                output += lines
                if scenario == "burst":
                    burst = runs
    finally:
        drop_database(options.admin_url, DB)

    print()
    print("\n".join(output))
    if burst:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(9, 5))
        series = {name: run.lateness for name, run in burst.items()}
        ecdf(ax, series, "lateness at the receiver after the scheduled instant (ms)", f"{tasks} webhooks at once")
        print(f"figure: {save(fig, 'compare.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
