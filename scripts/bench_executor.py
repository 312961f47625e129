"""The executor under a burst: CPU per webhook execution, lateness at the receiver, RPC latency beside it.

One replica process on a fresh Postgres database, a loopback receiver in this process. N webhook tasks
get one execution each, all due at one instant (queued in one transaction with the NOTIFY the engine
sends). Two bursts: the first measures CPU (utime + stime from ``/proc`` of the replica and of every
process it started, reaped children included) per execution and the receipt lateness; the second
measures GetTask latency (sequential calls from this process) while the burst runs, against the same
calls on the idle replica in the same run. The floor, in the same run: a bare asyncio client posting
the same N at once to the same receiver, with its lateness and CPU per POST.

    python scripts/bench_executor.py [--webhooks 1000] [--handler remote|local|http] [--tree DIR]

``--handler http``: the built-in ``http`` handler, in whatever lane the replica runs it. ``remote``: a
minimal remote-lane webhook (a bare asyncio POST, ``bench_remote.py``), the executor's own cost with
the least handler work; ``local``: the same call in the local lane (a worker process per execution).
``--tree`` runs the replica from another checkout (e.g. an older commit
exported with ``git archive``) to compare before and after; only ``--handler http`` works there.
Talks only to loopback; stops the replica and drops its database however it ends.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
from drill_common import (
    ROOT,
    Receiver,
    drop_database,
    exit_on_sigterm,
    free_port,
    fresh_database,
    percentiles,
    sqlalchemy_url,
    wait_serving,
)
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

DATABASE = "bench_executor"
TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """CPU seconds of ``root`` and its descendants, including the children they reaped."""
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / TICKS  # utime stime cutime cstime
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def own_cpu_s(pid: int) -> float:
    """CPU seconds of the replica process alone (its threads: dispatcher, recorder, event loop, gRPC)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:13]) / TICKS


def insert_tasks(conn: psycopg.Connection[Any], count: int, handler: str, url: str) -> None:
    conn.execute(
        """
        INSERT INTO scheduled_tasks (id, name, schedule, timezone, handler, enabled, metadata, next_run, created_at,
            updated_at, retry_max, retry_initial_delay_s, retry_multiplier, retry_max_delay_s, retry_jitter,
            timeout_s, overlap_policy, catchup_window_s, critical)
        SELECT 'hook-id-' || i, 'hook-' || i, '@yearly', 'UTC', %(h)s, false, jsonb_build_object('url', %(u)s::text),
               NULL, now(), now(), 0, 1, 2, 3600, false, 30, 'allow', 3600, false
        FROM generate_series(1, %(c)s) AS i
        """,
        {"h": handler, "u": url, "c": count},
    )


def queue_burst(conn: psycopg.Connection[Any], instant: datetime) -> None:
    """One pending execution per task, all due at ``instant``, and the executors' wake-up."""
    conn.execute(
        """
        INSERT INTO task_executions (id, task_id, task_name, trigger, scheduled_for, attempt, status, due_at,
            created_at)
        SELECT 'exec-' || md5(random()::text), id, name, 'schedule', %(t)s, 1, 'pending', %(t)s, %(t)s
        FROM scheduled_tasks WHERE name LIKE 'hook-%%'
        """,
        {"t": instant},
    )
    conn.execute("SELECT pg_notify('schedule_executions', '')")


def finished(conn: psycopg.Connection[Any], instant: datetime) -> int:
    row = conn.execute(
        "SELECT count(*) FROM task_executions WHERE scheduled_for = %s AND status NOT IN ('pending', 'running')",
        (instant,),
    ).fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--webhooks", type=int, default=1000)
    parser.add_argument("--handler", choices=["remote", "local", "http"], default="remote")
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout the replica runs from")
    parser.add_argument("--max-wait-s", type=float, default=300.0)
    args = parser.parse_args()
    if not 1 <= args.webhooks <= 20_000:
        parser.error("--webhooks is 1..20000")
    exit_on_sigterm()
    n = args.webhooks
    conninfo = fresh_database(args.admin_url, DATABASE)
    port = free_port()
    env = {
        **os.environ,
        "SCHEDULE_DATABASE_URL": sqlalchemy_url(conninfo),
        "SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SCHEDULE_METRICS_ADDRESS": "off",
        "SCHEDULE_MIGRATE_ON_START": "false",
        "SCHEDULE_ENGINE_ENABLED": "false",
        "SCHEDULE_LOG_LEVEL": "WARNING",
        "SCHEDULE_EGRESS_ALLOW": "127.0.0.0/8",  # the receiver is on loopback, refused by default
        "PYTHONPATH": os.pathsep.join([str(args.tree), str(args.tree / "generated"), str(ROOT / "scripts")]),
    }
    command = [sys.executable, str(args.tree / "server.py")]
    if args.handler != "http":
        command = [sys.executable, str(ROOT / "scripts" / "bench_remote.py")]
    replica: subprocess.Popen[bytes] | None = None
    try:
        with Receiver() as receiver, psycopg.connect(conninfo, autocommit=True) as conn:
            handler = {"remote": "bench-post", "local": "bench-post-local", "http": "http"}[args.handler]
            insert_tasks(conn, args.webhooks, handler, receiver.url)
            replica = subprocess.Popen(command, cwd=args.tree, env=env)
            if not wait_serving(f"127.0.0.1:{port}", 60):
                print("the replica did not start", file=sys.stderr)
                return 1
            time.sleep(2)  # the fork server and its spares start
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.ScheduleServiceStub(channel)
                idle = [rpc_s(stub) for _ in range(200)]

                # --- burst 1: CPU and lateness ---
                before_tree, before_own = tree_cpu_s(replica.pid), own_cpu_s(replica.pid)
                instant = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
                received_before = len(receiver.received)
                queue_burst(conn, instant)
                done_at = wait_done(conn, instant, args.webhooks, args.max_wait_s)
                tree, own = tree_cpu_s(replica.pid) - before_tree, own_cpu_s(replica.pid) - before_own
                lateness = [at - instant.timestamp() for at, _ in receiver.received[received_before:]]
                rows = conn.execute(
                    "SELECT extract(epoch FROM started_at - scheduled_for), duration_ms FROM task_executions "
                    "WHERE scheduled_for = %s",
                    (instant,),
                ).fetchall()
                started = [float(r[0]) for r in rows]
                durations = [float(r[1]) / 1000 for r in rows]

                # --- burst 2: GetTask beside it ---
                instant2 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
                queue_burst(conn, instant2)
                while datetime.now(UTC) < instant2:
                    time.sleep(0.01)
                busy: list[float] = []
                stop = threading.Event()

                def drained() -> None:
                    wait_done(conn, instant2, args.webhooks, args.max_wait_s)
                    stop.set()

                waiter = threading.Thread(target=drained)
                waiter.start()
                while not stop.is_set():
                    busy.append(rpc_s(stub))
                waiter.join()
            floor_before = len(receiver.received)
            floor = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "scripts" / "bench_remote.py"),
                    "--floor",
                    receiver.url,
                    str(args.webhooks),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            floor_at, floor_cpu = (float(x) for x in floor.stdout.split()[-2:])
            floor_lateness = [at - floor_at for at, _ in receiver.received[floor_before:]]
        print(f"replica: {args.tree} handler {args.handler}, {n} webhooks due at one instant")
        print(
            f"received {len(lateness)}; drained {done_at - instant.timestamp():.2f} s after the instant; lateness at "
            "the receiver p50 {:.3f} s, p95 {:.3f} s, p99 {:.3f} s, max {:.3f} s".format(*percentiles(lateness))
        )
        print(
            "execution started after the instant p50 {:.3f} s, p95 {:.3f} s, p99 {:.3f} s, max {:.3f} s".format(
                *percentiles(started)
            )
        )
        print(
            "execution duration (claim to completion) p50 {:.3f} s, p95 {:.3f} s, p99 {:.3f} s, max {:.3f} s".format(
                *percentiles(durations)
            )
        )
        print(
            f"CPU per execution: replica process {own / n * 1000:.2f} ms, "
            f"replica + worker processes + fork server {tree / n * 1000:.2f} ms"
        )
        print(
            "floor, a bare asyncio client posting the same {} at once: lateness p50 {:.3f} s, p95 {:.3f} s, "
            "p99 {:.3f} s, max {:.3f} s; CPU {:.2f} ms per POST".format(
                n, *percentiles(floor_lateness), floor_cpu / n * 1000
            )
        )
        i50, i95, _, imax = percentiles(idle)
        b50, b95, _, bmax = percentiles(busy)
        print(
            f"GetTask idle ({len(idle)} calls): p50 {i50 * 1000:.1f} ms, p95 {i95 * 1000:.1f} ms, "
            f"max {imax * 1000:.1f} ms"
        )
        print(
            f"GetTask during the burst ({len(busy)} calls): p50 {b50 * 1000:.1f} ms, p95 {b95 * 1000:.1f} ms, "
            f"max {bmax * 1000:.1f} ms; p95 ratio busy/idle {b95 / i95:.1f}"
        )
        return 0
    finally:
        if replica is not None and replica.poll() is None:
            replica.send_signal(signal.SIGTERM)
            try:
                replica.wait(30)
            except subprocess.TimeoutExpired:
                replica.kill()
                replica.wait()
        drop_database(args.admin_url, DATABASE)


def rpc_s(stub: pb_grpc.ScheduleServiceStub) -> float:
    started = time.perf_counter()
    stub.GetTask(pb.GetTaskRequest(name="hook-1"), timeout=30)
    return time.perf_counter() - started


def wait_done(conn: psycopg.Connection[Any], instant: datetime, count: int, max_wait_s: float) -> float:
    """Polls until every execution of ``instant`` finished; the time it was seen done."""
    deadline = time.monotonic() + max_wait_s
    with psycopg.connect(conn.info.dsn, autocommit=True) as own:
        while finished(own, instant) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"not drained within {max_wait_s:g} s")
            time.sleep(0.05)
    return time.time()


if __name__ == "__main__":
    sys.exit(main())
