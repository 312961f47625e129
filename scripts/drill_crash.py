"""Crash drill: two replicas share the Postgres queue; one is kill -9'd with executions in flight.

Phase 1 queues --executions executions of a handler that sleeps --work-s, starts two replica
processes (--lease-s lease), kills one with SIGKILL once it runs some, and waits (at most
--max-wait-s) until every occurrence has succeeded. It prints how many executions started,
finished and were recovered from the dead replica's expired leases, how many occurrences were lost
(must be 0) and how many succeeded more than once (duplicated). ``--lane remote``: the handler sleeps
on the replicas' event loops instead of in worker processes.

Phase 2 measures the executor's overhead for a no-op handler, from claim to recorded success
(worker process, pipe, outcome and its transaction), over --samples executions, against a floor
measured in the same run: the same two database writes (claim, record) without a worker process.

    python scripts/drill_crash.py [--admin-url postgresql://postgres@127.0.0.1/postgres]

Talks only to loopback; stops by itself; kills every process it starts and drops its database.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))  # drill_handlers, here and in worker processes
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drill_handlers import DrillNoop, DrillRemoteWork, DrillWork

from schedule_grpc.domain.clock import SystemClock
from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.lifecycle import Decision
from schedule_grpc.domain.models import Execution, ExecutionStatus, OverlapPolicy, RetryPolicy, Task, Trigger
from schedule_grpc.execution.alerts import LogAlerts
from schedule_grpc.execution.executor import Executor, ExecutorConfig
from schedule_grpc.execution.runner import Attempt
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.store import db
from schedule_grpc.store.queue import Finished, QueueStore
from schedule_grpc.store.tasks import TaskStore


def registry() -> HandlerRegistry:
    return HandlerRegistry([DrillWork(), DrillRemoteWork(), DrillNoop()])


def replica_main(url: str, lease_s: float) -> None:
    """One replica: the real composition root with the drill's handlers, until SIGTERM."""
    from schedule_grpc.app import build
    from schedule_grpc.settings import Settings

    settings = Settings(
        database_url=url,
        grpc_address="127.0.0.1:0",
        migrate_on_start=False,
        metrics_address="",
        executor_concurrency=8,
        executor_poll_interval_s=0.2,
        executor_lease_s=lease_s,
        shutdown_grace_s=2.0,
        log_level="WARNING",
    )
    service = build(settings, handlers=registry())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service.start()
    stop.wait()
    service.stop()


def make_task(store: TaskStore, name: str, handler: str, metadata: dict[str, object]) -> Task:
    now = datetime.now(UTC)
    return store.insert(
        Task(
            id=new_id("task"),
            name=name,
            schedule="@yearly",
            handler=handler,
            enabled=False,
            metadata=metadata,
            timezone="UTC",
            created_at=now,
            updated_at=now,
            retry_policy=RetryPolicy(initial_delay=timedelta(milliseconds=200)),
            timeout=timedelta(seconds=30),
            overlap_policy=OverlapPolicy.ALLOW,
        )
    )


def pending(task: Task, at: datetime, i: int) -> Execution:
    occurrence = at - timedelta(seconds=i)
    return Execution(
        id=new_id("exec"),
        task_id=task.id,
        task_name=task.name,
        trigger=Trigger.SCHEDULE,
        scheduled_for=occurrence,
        attempt=1,
        status=ExecutionStatus.PENDING,
        due_at=at,
        created_at=at,
    )


def pct(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49] * 1000, q[94] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--executions", type=int, default=100)
    parser.add_argument("--work-s", type=float, default=0.5)
    parser.add_argument(
        "--lane", choices=["local", "remote"], default="local", help="the lane phase 1's sleeping handler runs in"
    )
    parser.add_argument("--lease-s", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--max-wait-s", type=float, default=90.0)
    parser.add_argument("--replica", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replica:
        replica_main(args.replica, args.lease_s)
        return 0

    name = f"schedule_drill_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(args.admin_url).set(drivername="postgresql+psycopg", database=name)
    url_s = url.render_as_string(hide_password=False)
    database = db.make_engine(url_s)
    replicas: list[subprocess.Popen[bytes]] = []
    try:
        db.migrate(database)
        tasks = TaskStore(database)
        queue = QueueStore(database)
        handler = "drill-work-remote" if args.lane == "remote" else "drill-work"
        work = make_task(tasks, "drill-work", handler, {"seconds": args.work_s})

        # --- phase 1: kill -9 one of two replicas with executions in flight ------------------------
        for _ in range(2):
            replicas.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--replica", url_s, "--lease-s", str(args.lease_s)],
                    start_new_session=True,
                )
            )
        time.sleep(3)  # both replicas up (imports, fork server)
        now = datetime.now(UTC)
        for i in range(args.executions):
            queue.enqueue(pending(work, now, i))
        victim = replicas[0]
        victim_owner = f"-{victim.pid}-"
        deadline = time.monotonic() + 30
        with database.connect() as conn:
            while time.monotonic() < deadline:
                in_flight = conn.execute(
                    text("SELECT count(*) FROM task_executions WHERE status = 'running' AND lease_owner LIKE :o"),
                    {"o": f"%{victim_owner}%"},
                ).scalar()
                conn.commit()
                if in_flight and in_flight >= 4:
                    break
                time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()
        print(f"killed replica pid {victim.pid} with {in_flight} executions running on it")

        deadline = time.monotonic() + args.max_wait_s
        while time.monotonic() < deadline:
            with database.connect() as conn:
                done = conn.execute(
                    text("SELECT count(DISTINCT scheduled_for) FROM task_executions WHERE status = 'success'")
                ).scalar()
            if done == args.executions:
                break
            time.sleep(0.2)
        settled_s = time.monotonic() - killed_at
        with database.connect() as conn:
            row = conn.execute(
                text(
                    """
                    SELECT
                      count(*) FILTER (WHERE started_at IS NOT NULL),
                      count(*) FILTER (WHERE status IN ('success', 'failed')),
                      count(*) FILTER (WHERE status = 'failed' AND error LIKE 'lost:%')
                    FROM task_executions
                    """
                )
            ).one()
            per_occurrence = (
                conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE status = 'success') FROM task_executions GROUP BY scheduled_for"
                    )
                )
                .scalars()
                .all()
            )
        started, finished, recovered = row
        lost = args.executions - sum(1 for n in per_occurrence if n >= 1)
        duplicated = sum(1 for n in per_occurrence if n > 1)
        print(
            f"executions: {args.executions} occurrences, started {started}, finished {finished}, "
            f"recovered {recovered}, lost {lost}, duplicated {duplicated}; "
            f"all settled {settled_s:.1f}s after the kill (lease {args.lease_s:g}s)"
        )
        for replica in replicas[1:]:
            replica.send_signal(signal.SIGTERM)
            replica.wait(30)

        # --- phase 2: overhead of a no-op handler, claim -> recorded success, against its floor ----
        noop = make_task(tasks, "drill-noop", "drill-noop", {})
        floor_task = make_task(tasks, "drill-floor", "drill-noop", {})
        clock = SystemClock()
        lease = timedelta(seconds=30)
        floor: list[float] = []
        for i in range(args.samples):
            queue.enqueue(pending(floor_task, clock.now(), i))
            t0 = time.perf_counter()
            [claimed] = queue.claim(owner="floor", now=clock.now(), lease=lease, limit=1)
            outcome = Attempt(ExecutionStatus.SUCCESS).at(clock.now())
            queue.record("floor", [Finished(claimed, outcome, Decision())])
            floor.append(time.perf_counter() - t0)

        overhead: list[float] = []
        recorded = threading.Semaphore(0)

        def observe(execution: Execution, seconds: float) -> None:
            overhead.append(seconds)
            recorded.release()

        executor = Executor(
            queue,
            registry(),
            clock,
            LogAlerts(),
            ExecutorConfig(owner="overhead", concurrency=1, poll_interval_s=0.2, lease_s=30),
            on_recorded=observe,
        )
        executor.start()
        time.sleep(2)  # fork server and spare worker up
        try:
            for i in range(args.samples):  # one at a time: the figure is latency, not throughput
                queue.enqueue(pending(noop, clock.now(), i))
                executor.wake()
                if not recorded.acquire(timeout=30):
                    raise RuntimeError("no-op execution not recorded within 30s")
        finally:
            executor.stop()
        (f50, f95), (o50, o95) = pct(floor), pct(overhead)
        print(f"floor (claim + record, no worker process): p50 {f50:.2f} ms, p95 {f95:.2f} ms")
        print(f"no-op handler, claim -> recorded success:   p50 {o50:.2f} ms, p95 {o95:.2f} ms")
        print(f"ratio to the floor: p50 {o50 / f50:.1f}x, p95 {o95 / f95:.1f}x")
        return 0 if lost == 0 and duplicated == 0 else 1
    finally:
        for replica in replicas:
            if replica.poll() is None:
                replica.kill()
                replica.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(replica.pid, signal.SIGKILL)  # its fork server and worker processes
        database.dispose()
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
