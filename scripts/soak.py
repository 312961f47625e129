"""Soak: two replicas on Postgres under a bounded mixed RPC load while 1,000 tasks fire every minute.

One run on a fresh database (dropped at the end), real server processes, loopback only:
  - --tasks webhook tasks '* * * * *' (default 1,000) calling a loopback HTTP receiver;
  - two replicas (python server.py);
  - --clients client processes (default 4), each at most --rate calls/s (default 10) for --duration
    (default 10m): GetTask, ListTasks, GetTaskHistory, RegisterTask, EnableTask/DisableTask and
    RunTaskNow on its own tasks, and deliberate bad requests, each of which must get its own code
    (NOT_FOUND, INVALID_ARGUMENT, ALREADY_EXISTS);
  - the replicas' RSS (/proc) every 5 s.
Prints per-method throughput and p50/p95/p99, unexpected errors, the occurrences expected / fired /
doubled / missed (execution rows with trigger schedule, unique per task and instant), the webhook
lateness, and the RSS samples with the slope of their last half. Writes docs/soak.png.

    python scripts/soak.py [--duration 10m] [--clients 4] [--rate 10] [--tasks 1000]

Exit status 0 only when there were no unexpected errors, nothing doubled or missed and memory levelled off.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drill_common import (
    Processes,
    Receiver,
    RssSampler,
    drop_database,
    exit_on_sigterm,
    free_port,
    fresh_database,
    insert_tasks,
    next_minute,
    replica_env,
    sleep_until,
    start_replica,
    wait_serving,
)
from perf_plot import ecdf, pyplot, save
from perf_stats import MemoryTrend, Summary, tally

DB = "schedule_soak"
# operation: weight. "bad ..." operations are deliberate bad requests, answered with the code in BAD.
MIX = {
    "GetTask": 25,
    "ListTasks": 12,
    "GetTaskHistory": 15,
    "RegisterTask": 10,
    "EnableTask/DisableTask": 10,
    "RunTaskNow": 5,
    "bad GetTask (missing)": 8,
    "bad RegisterTask (schedule)": 8,
    "bad RegisterTask (duplicate)": 4,
    "bad EnableTask (missing)": 3,
}
BAD = {
    "bad GetTask (missing)": grpc.StatusCode.NOT_FOUND,
    "bad RegisterTask (schedule)": grpc.StatusCode.INVALID_ARGUMENT,
    "bad RegisterTask (duplicate)": grpc.StatusCode.ALREADY_EXISTS,
    "bad EnableTask (missing)": grpc.StatusCode.NOT_FOUND,
}


def parse_duration(text: str) -> float:
    """'10m', '180s', '90' (seconds) -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


# --- a client process --------------------------------------------------------------------------


def client(index: int, addresses: list[str], until: float, rate: float, tasks: int, url: str, out: str) -> None:
    rng = random.Random(index)
    channels = [grpc.insecure_channel(a) for a in addresses]
    stubs = [pb_grpc.ScheduleServiceStub(c) for c in channels]
    own: list[str] = []
    enabled: dict[str, bool] = {}
    latency: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, Counter[str]] = defaultdict(Counter)
    token = ""

    def fixed(i: int) -> str:
        return f"soak-{i}"

    def new_task(name: str, schedule: str = "@yearly") -> pb.RegisterTaskRequest:
        request = pb.RegisterTaskRequest(name=name, schedule=schedule, handler="http")
        request.metadata.update({"url": url})
        return request

    def call(stub: pb_grpc.ScheduleServiceStub, op: str) -> None:
        nonlocal token
        if op == "GetTask":
            stub.GetTask(pb.GetTaskRequest(name=fixed(rng.randint(1, tasks))), timeout=10)
        elif op == "ListTasks":
            token = stub.ListTasks(pb.ListTasksRequest(page_size=50, page_token=token), timeout=10).next_page_token
        elif op == "GetTaskHistory":
            stub.GetTaskHistory(pb.GetTaskHistoryRequest(name=fixed(rng.randint(1, tasks)), limit=20), timeout=10)
        elif op == "RegisterTask":
            name = f"client{index}-{len(own)}"
            stub.RegisterTask(new_task(name), timeout=10)
            own.append(name)
            enabled[name] = True
        elif op == "EnableTask/DisableTask":
            name = rng.choice(own)
            if enabled[name]:
                stub.DisableTask(pb.DisableTaskRequest(name=name), timeout=10)
            else:
                stub.EnableTask(pb.EnableTaskRequest(name=name), timeout=10)
            enabled[name] = not enabled[name]
        elif op == "RunTaskNow":
            stub.RunTaskNow(pb.RunTaskNowRequest(name=rng.choice(own)), timeout=30)
        elif op == "bad GetTask (missing)":
            stub.GetTask(pb.GetTaskRequest(name=f"absent-{rng.random()}"), timeout=10)
        elif op == "bad RegisterTask (schedule)":
            stub.RegisterTask(new_task(f"bad-{index}", "61 * * * *"), timeout=10)
        elif op == "bad RegisterTask (duplicate)":
            stub.RegisterTask(new_task(fixed(rng.randint(1, tasks))), timeout=10)
        elif op == "bad EnableTask (missing)":
            stub.EnableTask(pb.EnableTaskRequest(name=f"absent-{rng.random()}"), timeout=10)

    ops, weights = list(MIX), list(MIX.values())
    next_at = time.monotonic()
    i = 0
    while time.time() < until:
        op = rng.choices(ops, weights)[0]
        if op in ("EnableTask/DisableTask", "RunTaskNow") and not own:
            op = "RegisterTask"
        i += 1
        t0 = time.perf_counter()
        try:
            call(stubs[i % len(stubs)], op)
            elapsed = time.perf_counter() - t0
            if op in BAD:
                errors[op]["OK (expected an error)"] += 1
            else:
                latency[op].append(elapsed)
        except grpc.RpcError as error:
            elapsed = time.perf_counter() - t0
            code = error.code()
            if BAD.get(op) == code:
                latency[op].append(elapsed)
            else:
                errors[op][f"{code.name}: {error.details()}"[:200]] += 1
        next_at += 1 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    for channel in channels:
        channel.close()
    Path(out).write_text(json.dumps({"latency": latency, "errors": errors}))


# --- the run -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--duration", default="10m", help="load duration: 10m, 180s, ... (1m to 60m)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0, help="calls per second per client, at most")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--logs", default="/tmp/soak")
    parser.add_argument("--client", nargs=7, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.client:
        index, addresses, until, rate, tasks, url, out = options.client
        client(int(index), addresses.split(","), float(until), float(rate), int(tasks), url, out)
        return 0
    duration = min(max(parse_duration(options.duration), 60.0), 3600.0)
    clients, rate, tasks = min(max(options.clients, 1), 16), min(max(options.rate, 0.1), 100.0), options.tasks
    tasks = min(max(tasks, 1), 5000)
    exit_on_sigterm()
    logs = Path(options.logs)
    logs.mkdir(parents=True, exist_ok=True)

    conninfo = fresh_database(options.admin_url, DB)
    try:
        with Receiver() as receiver, Processes() as procs:
            first = next_minute(datetime.now(UTC) + timedelta(seconds=20))
            with psycopg.connect(conninfo, autocommit=True) as conn:
                insert_tasks(conn, "soak", tasks, "* * * * *", first)
                conn.execute("UPDATE scheduled_tasks SET metadata = %s", (json.dumps({"url": receiver.url}),))
            ports = [free_port(), free_port()]
            addresses = [f"127.0.0.1:{p}" for p in ports]
            files = [open(logs / f"r{i}.log", "wb") for i in range(2)]  # noqa: SIM115
            replicas = [
                procs.add(start_replica(conninfo, f"r{i}", f, **replica_env(p)))
                for i, (f, p) in enumerate(zip(files, ports, strict=True))
            ]
            if not all(wait_serving(a, 60) for a in addresses):
                raise RuntimeError(f"the replicas did not start; see {logs}")
            start = time.time()
            end = start + duration
            outs = [logs / f"client{i}.json" for i in range(clients)]
            print(
                f"{tasks} tasks '* * * * *' from {first:%H:%M}, 2 replicas, {clients} clients at <= {rate:g} calls/s "
                f"each for {duration:g} s; logs in {logs}",
                flush=True,
            )
            with RssSampler({f"r{i}": r.pid for i, r in enumerate(replicas)}, 5.0) as rss:
                workers = [
                    procs.add(
                        subprocess.Popen(
                            [
                                sys.executable,
                                __file__,
                                "--client",
                                str(i),
                                ",".join(addresses),
                                str(end),
                                str(rate),
                                str(tasks),
                                receiver.url,
                                str(out),
                            ]
                        )
                    )
                    for i, out in enumerate(outs)
                ]
                for worker in workers:
                    worker.wait(timeout=duration + 120)
                instants = [first + timedelta(minutes=k) for k in range(int(duration // 60) + 2)]
                instants = [t for t in instants if t.timestamp() <= end - 15]
                sleep_until(datetime.fromtimestamp(end, UTC) + timedelta(seconds=5))
            for process in replicas:
                process.terminate()
            for process in replicas:
                process.wait(timeout=30)
            for f in files:
                f.close()
            receipts = list(receiver.received)
        with psycopg.connect(conninfo) as conn:
            task_ids = [r[0] for r in conn.execute("SELECT id FROM scheduled_tasks WHERE name LIKE 'soak-%%'")]
            rows = conn.execute(
                "SELECT task_id, scheduled_for, status FROM task_executions WHERE trigger = 'schedule'"
                " AND task_name LIKE 'soak-%%' AND scheduled_for <= %s",
                (instants[-1] if instants else first,),
            ).fetchall()
        results = [json.loads(o.read_text()) for o in outs]
    finally:
        drop_database(options.admin_url, DB)
    return report(results, duration, task_ids, instants, rows, receipts, rss.samples)


def report(
    results: list[dict[str, Any]],
    duration: float,
    task_ids: list[str],
    instants: list[datetime],
    rows: list[Any],
    receipts: list[tuple[float, dict[str, str]]],
    rss: dict[str, list[tuple[float, float]]],
) -> int:
    latency: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        for op, samples in result["latency"].items():
            latency[op].extend(samples)
        for op, codes in result["errors"].items():
            errors[op].update(codes)
    print(f"\nper method over {duration:g} s (calls/s, latency)")
    for op in MIX:
        summary = Summary.of(latency[op])
        if summary is not None:
            expected = f" -> {BAD[op].name}" if op in BAD else ""
            print(f"  {op + expected:44} {len(latency[op]) / duration:6.2f}/s  {summary.line()}")
    unexpected = sum(sum(c.values()) for c in errors.values())
    print(f"unexpected errors: {unexpected}")
    for op, codes in errors.items():
        for code, n in codes.most_common(5):
            print(f"  {op}: {n} x {code}")

    t = tally([(r[0], r[1]) for r in rows], task_ids, instants)
    statuses = Counter(r[2] for r in rows)
    print(
        f"\noccurrences ({len(task_ids)} tasks x {len(instants)} instants): expected {t.expected}  fired {t.fired}  "
        f"doubled {t.doubled}  missed {t.missed}  (rows outside the instants {t.outside}); statuses {dict(statuses)}"
    )
    wanted = {i.timestamp() for i in instants}
    lateness = [
        at - datetime.fromisoformat(h["X-Schedule-Scheduled-For"]).timestamp()
        for at, h in receipts
        if "X-Schedule-Scheduled-For" in h
        and datetime.fromisoformat(h["X-Schedule-Scheduled-For"]).timestamp() in wanted
    ]
    fire = Summary.of(lateness)
    print(f"webhook lateness (receipt - scheduled instant): {fire.line() if fire else 'no receipts'}")

    print("\nreplica RSS (MiB), every 5 s:")
    levelled = True
    for name, points in rss.items():
        print(f"  {name}: {' '.join(f'{v:.0f}' for _, v in points)}")
        trend = MemoryTrend.of(points)
        if trend is not None:
            levelled = levelled and trend.levels_off
            print(
                f"  {name}: {trend.start_mib:.0f} -> {trend.end_mib:.0f} MiB (peak {trend.peak_mib:.0f}); "
                f"slope first half "
                f"{trend.first_half:+.2f} MiB/min, last half {trend.last_half:+.2f} MiB/min: "
                f"{'levels off' if trend.levels_off else 'STILL GROWING'}"
            )
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    ecdf(left, {op: v for op, v in latency.items() if op in MIX}, "latency (ms)", f"soak: RPC latency, {duration:g} s")
    for name, points in rss.items():
        right.plot([x / 60 for x, _ in points], [y for _, y in points], label=name)
    right.set_xlabel("minutes")
    right.set_ylabel("RSS (MiB)")
    right.set_ylim(bottom=0)
    right.set_title("soak: replica RSS")
    right.legend()
    print(f"figure: {save(fig, 'soak.png')}")
    ok = unexpected == 0 and t.doubled == 0 and t.missed == 0 and levelled
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
