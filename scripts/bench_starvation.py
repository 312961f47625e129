"""Another caller's latency while one caller holds every long call it may (the server as its own process).

Starts the server on SQLite with two bearer tokens, then measures caller B's ListTasks and a health Check:
  quiet:   nothing else running
  loaded:  caller A holds its whole share of long calls (WatchExecutions streams and RunTaskNow calls
           of a task whose webhook never answers), and keeps asking for more (refused at once)
and prints p50/p95/max of each and the loaded/quiet p95 ratios. The bar: loaded answers within 100 ms.

    python scripts/bench_starvation.py [--calls 500]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rpc import percentiles
from drill_common import ROOT, free_port, wait_serving

PER_CALLER = 8
STREAMS = 8


def _tokens() -> tuple[str, dict[str, tuple[tuple[str, str], ...]]]:
    secrets = {"alpha": "alpha-bench-secret", "beta": "beta-bench-secret"}
    spec = ",".join(f"{name}:service:{hashlib.sha256(token.encode()).hexdigest()}" for name, token in secrets.items())
    return spec, {name: (("authorization", f"Bearer {token}"),) for name, token in secrets.items()}


def measure(
    stub: pb_grpc.ScheduleServiceStub, health: health_pb2_grpc.HealthStub, meta: object, calls: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"ListTasks": [], "health Check": []}
    for _ in range(calls):
        start = time.perf_counter()
        stub.ListTasks(pb.ListTasksRequest(), metadata=meta, timeout=5)  # type: ignore[arg-type]
        samples["ListTasks"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        samples["health Check"].append((time.perf_counter() - start) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    options = parser.parse_args()
    spec, meta = _tokens()
    black_hole = socket.socket()  # accepts connections (backlog) and never answers: a webhook that hangs
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(64)
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="starvation-"))
    env = {
        **os.environ,
        "SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SCHEDULE_DATABASE_URL": f"sqlite:///{work / 'schedule.db'}",
        "SCHEDULE_METRICS_ADDRESS": "off",
        "SCHEDULE_AUTH_TOKENS": spec,
        "SCHEDULE_LONG_CALLS_PER_CALLER": str(PER_CALLER),
        "SCHEDULE_WATCH_MAX_STREAMS": str(STREAMS),
        "SCHEDULE_EXPENSIVE_RATE_LIMIT_BURST": "1000",
        "SCHEDULE_RATE_LIMIT_BURST": "100000",
        "SCHEDULE_RATE_LIMIT_PER_S": "100000",
        "SCHEDULE_SHUTDOWN_DRAIN_S": "0",
        "SCHEDULE_SHUTDOWN_GRACE_S": "1",
        "SCHEDULE_LOG_LEVEL": "ERROR",
    }
    server = subprocess.Popen([sys.executable, str(ROOT / "server.py")], env=env)
    held: list[grpc.Future] = []  # type: ignore[type-arg]
    try:
        if not wait_serving(f"127.0.0.1:{port}", 60):
            print("server did not start", file=sys.stderr)
            return 1
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub, health = pb_grpc.ScheduleServiceStub(channel), health_pb2_grpc.HealthStub(channel)
        request = pb.RegisterTaskRequest(name="hangs", schedule="@hourly", handler="http")
        request.metadata.update({"url": f"http://127.0.0.1:{black_hole.getsockname()[1]}/", "timeoutSeconds": 3000})
        stub.RegisterTask(request, metadata=meta["alpha"])
        quiet = measure(stub, health, meta["beta"], options.calls)

        streams = [stub.WatchExecutions(pb.WatchExecutionsRequest(), metadata=meta["alpha"]) for _ in range(4)]
        runs = [
            stub.RunTaskNow.future(pb.RunTaskNowRequest(name="hangs"), metadata=meta["alpha"], timeout=600)
            for _ in range(PER_CALLER - len(streams))
        ]
        held.extend([*streams, *runs])  # type: ignore[list-item]
        time.sleep(1.0)
        refused = {"count": 0}
        stop = threading.Event()

        def pester() -> None:  # caller A keeps asking for more long calls
            while not stop.is_set():
                try:
                    stub.RunTaskNow(pb.RunTaskNowRequest(name="hangs"), metadata=meta["alpha"], timeout=5)
                except grpc.RpcError as error:
                    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        refused["count"] += 1
                time.sleep(0.01)

        pesterer = threading.Thread(target=pester, daemon=True)
        pesterer.start()
        loaded = measure(stub, health, meta["beta"], options.calls)
        stop.set()
        pesterer.join(timeout=10)
    finally:
        for call in held:
            call.cancel()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        black_hole.close()

    print(
        f"\ncaller B, {options.calls} calls each; caller A holding {PER_CALLER} long calls "
        f"(4 streams, {PER_CALLER - 4} RunTaskNow), {refused['count']} more refused meanwhile"
    )
    print(f"{'':28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, results in (("quiet", quiet), ("loaded", loaded)):
        for name, samples in results.items():
            p50, p95, _ = percentiles(samples)
            print(f"{label + ' ' + name:28} {p50:8.2f} {p95:8.2f} {max(samples):8.2f}")
    for name in quiet:
        print(f"loaded/quiet p95 {name}: {percentiles(loaded[name])[1] / percentiles(quiet[name])[1]:.2f}")
    worst = max(max(samples) for samples in loaded.values())
    print(f"bar (every loaded call within 100 ms): {'met' if worst < 100 else 'NOT met'} (worst {worst:.1f} ms)")
    return 0 if worst < 100 else 1


if __name__ == "__main__":
    sys.exit(main())
