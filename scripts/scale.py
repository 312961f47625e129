"""Scale: 100,000 registered tasks on Postgres; start-up, failover, RPC latency and firing rate.

One run, on a fresh database (dropped at the end), real server processes on loopback:
  1. --small tasks (default 1,000): one replica's start-up (until SERVING on grpc.health.v1 and
     leading), then RegisterTask and ListTasks (pages of 100, walking next_page_token) latency and the
     gRPC floor (a health Check round trip), --calls each.
  2. --tasks in all (default 100,000, task N due at minute N % 60 of every hour, inserted by one SQL
     statement with next_run set as RegisterTask sets it), --burst of them (default 10,000) moved to
     one coming minute: the leader's start-up time and RSS (/proc) until SERVING and leading, a
     follower, the same RPC latencies again (ratio to step 1), the firing rate at that minute
     (execution rows handed on per second), then the leader is SIGKILLed and the follower's
     promotion timed (lock taken, then caught up and firing).
The tasks use a handler no replica has, so their executions fail at once without a worker process:
this measures the scheduler, not handlers. Bounded (about 4 minutes), stops by itself.

    python scripts/scale.py [--tasks 100000] [--small 1000] [--burst 10000] [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drill_common import (
    Processes,
    RssSampler,
    drop_database,
    exit_on_sigterm,
    free_port,
    fresh_database,
    insert_hourly_tasks,
    next_minute,
    replica_env,
    sleep_until,
    start_replica,
    wait_log_line,
    wait_serving,
)
from perf_stats import Summary, ratio

DB = "schedule_scale"
LEADING = '"message": "leading"'


class Replica:
    """A server process, its address and its log."""

    def __init__(self, procs: Processes, conninfo: str, name: str, logs: Path) -> None:
        self.name = name
        self.address = f"127.0.0.1:{free_port()}"
        self.log_path = logs / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.started = time.time()
        env = replica_env(int(self.address.rsplit(":", 1)[1]), SCHEDULE_EXECUTOR_CONCURRENCY="2")
        self.process = procs.add(start_replica(conninfo, name, self._log, **env))

    def wait_ready(self, timeout_s: float) -> tuple[float | None, float | None]:
        """Seconds from the process start until SERVING and until leading (None: not within the timeout)."""
        serving = time.time() - self.started if wait_serving(self.address, timeout_s) else None
        line = wait_log_line(self.log_path, LEADING, timeout_s)
        return serving, (log_time(line) - self.started) if line else None

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        self._log.close()


def log_time(line: str) -> float:
    return datetime.fromisoformat(json.loads(line)["time"]).timestamp()


def rpc_latencies(address: str, calls: int, tag: str) -> dict[str, list[float]]:
    """RegisterTask, a ListTasks page and the health Check floor, ``calls`` each, one client."""
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.ScheduleServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    token = ""

    def register(i: int) -> None:
        request = pb.RegisterTaskRequest(name=f"reg-{tag}-{i}", schedule="@yearly", handler="http")
        request.metadata.update({"url": "http://127.0.0.1:9/"})
        stub.RegisterTask(request, timeout=10)

    def page(_: int) -> None:
        nonlocal token
        token = stub.ListTasks(pb.ListTasksRequest(page_size=100, page_token=token), timeout=10).next_page_token

    def check(_: int) -> None:
        health.Check(health_pb2.HealthCheckRequest(), timeout=10)

    results: dict[str, list[float]] = {}
    for name, call in (("health Check (floor)", check), ("RegisterTask", register), ("ListTasks page", page)):
        for i in range(20):
            call(-1 - i)  # warm-up
        samples = []
        for i in range(calls):
            t0 = time.perf_counter()
            call(i)
            samples.append(time.perf_counter() - t0)
        results[name] = samples
    channel.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--start-timeout", type=float, default=120.0, help="give up on a start-up after this")
    parser.add_argument("--logs", default="/tmp/scale")
    options = parser.parse_args()
    total, small = min(max(options.tasks, 2000), 200_000), min(max(options.small, 100), 10_000)
    burst = min(max(options.burst, 0), total - small)
    exit_on_sigterm()
    logs = Path(options.logs)
    logs.mkdir(parents=True, exist_ok=True)

    conninfo = fresh_database(options.admin_url, DB)
    try:
        with Processes() as procs, psycopg.connect(conninfo, autocommit=True) as conn:
            # --- 1: the small case ----------------------------------------------------------------
            insert_hourly_tasks(conn, "scale", 1, small, datetime.now(UTC), handler="scale-none")
            s1 = Replica(procs, conninfo, "small", logs)
            serving, leading = s1.wait_ready(options.start_timeout)
            print(f"{small:,} tasks: start-up SERVING {fmt(serving)} s, leading {fmt(leading)} s")
            at_small = rpc_latencies(s1.address, options.calls, "small")
            s1.stop()

            # --- 2: the large case ----------------------------------------------------------------
            t0 = time.perf_counter()
            insert_hourly_tasks(conn, "scale", small + 1, total - small, datetime.now(UTC), handler="scale-none")
            conn.execute("ANALYZE scheduled_tasks")
            print(f"inserted {total - small:,} more tasks in {time.perf_counter() - t0:.1f} s ({total:,} in all)")
            boundary = next_minute(datetime.now(UTC) + timedelta(seconds=70))
            conn.execute(
                "UPDATE scheduled_tasks SET schedule = %s, next_run = %s"
                " WHERE id IN (SELECT id FROM scheduled_tasks ORDER BY id DESC LIMIT %s)",
                (f"{boundary.minute} * * * *", boundary, burst),
            )
            leader = Replica(procs, conninfo, "leader", logs)
            with RssSampler({"leader": leader.process.pid}, 0.1) as early:
                serving, leading = leader.wait_ready(options.start_timeout)
            rss_at_ready = early.samples["leader"][-1][1] if early.samples["leader"] else float("nan")
            peak_start = max((v for _, v in early.samples["leader"]), default=float("nan"))
            print(
                f"{total:,} tasks: start-up SERVING {fmt(serving)} s, leading {fmt(leading)} s; "
                f"RSS {rss_at_ready:.0f} MiB when ready, peak {peak_start:.0f} MiB during start-up"
            )
            follower = Replica(procs, conninfo, "follower", logs)
            f_serving = time.time() - follower.started if wait_serving(follower.address, 60) else None
            with RssSampler({"leader": leader.process.pid, "follower": follower.process.pid}, 0.5) as rss:
                at_large = rpc_latencies(leader.address, options.calls, "large")
                print(
                    f"follower SERVING after {fmt(f_serving)} s; "
                    f"firing {burst + total // 60:,} rows at {boundary:%H:%M}"
                )
                sleep_until(boundary + timedelta(seconds=2))
                fired = wait_rows(conn, boundary, burst + (total - burst) // 60, timeout_s=60)
                count, last = fired
                rate = count / last if last else float("nan")
                print(
                    f"fired {count:,} rows at {boundary:%H:%M:%S}; "
                    f"last handed on {fmt(last)} s after: {rate:,.0f} rows/s"
                )

                epoch = conn.execute("SELECT max(epoch) FROM leader_epochs").fetchone()
                before = epoch[0] if epoch else 0
                size = os.path.getsize(follower.log_path)
                killed = time.time()
                os.kill(leader.process.pid, signal.SIGKILL)
                leader.process.wait()
                lock_s = ready_s = None
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and lock_s is None:
                    row = conn.execute(
                        "SELECT acquired_at FROM leader_epochs WHERE epoch > %s ORDER BY epoch LIMIT 1", (before,)
                    ).fetchone()
                    if row:
                        lock_s = row[0].timestamp() - killed
                    time.sleep(0.02)
                line = wait_log_line(follower.log_path, LEADING, 60, start=size)
                ready_s = log_time(line) - killed if line else None
                print(f"leader SIGKILLed: follower took the lock after {fmt(lock_s)} s, leading after {fmt(ready_s)} s")
                time.sleep(2)
            follower.stop()
        report(at_small, at_large, small, total, rss.samples)
    finally:
        drop_database(options.admin_url, DB)
    return 0


def wait_rows(conn: psycopg.Connection[Any], instant: datetime, want: int, timeout_s: float) -> tuple[int, float]:
    """Rows of ``instant`` once ``want`` exist (or at the timeout), and seconds from it to the last one's insert."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = conn.execute(
            "SELECT count(*), max(created_at) FROM task_executions WHERE trigger = 'schedule' AND scheduled_for = %s",
            (instant,),
        ).fetchone()
        assert row is not None
        if row[0] >= want or time.monotonic() > deadline:
            return int(row[0]), (row[1] - instant).total_seconds() if row[1] else 0.0
        time.sleep(0.2)


def report(
    small: dict[str, list[float]],
    large: dict[str, list[float]],
    n_small: int,
    n_large: int,
    rss: dict[str, list[tuple[float, float]]],
) -> None:
    print(f"\nRPC latency, one client, on the leader: {n_small:,} tasks vs {n_large:,} tasks")
    for name in small:
        a, b = Summary.of(small[name]), Summary.of(large[name])
        assert a is not None and b is not None
        print(f"  {name:22} {n_small:>7,}: {a.line()}")
        print(f"  {'':22} {n_large:>7,}: {b.line()}")
        print(f"  {'':22} ratio p50 {ratio(b.p50, a.p50)}  p95 {ratio(b.p95, a.p95)}")
    for name, points in rss.items():
        if points:
            print(f"RSS {name}: {' '.join(f'{v:.0f}' for _, v in points[:: max(1, len(points) // 12)])} MiB")


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
