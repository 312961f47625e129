"""Overhead of the HTTP/JSON shim: the same calls over HTTP and as direct gRPC calls, in one run.

Starts the server as its own process on loopback (a fresh SQLite file, no credentials), registers one
task, then alternates, --calls times each:
  ListHandlers   gRPC  vs  GET /api/handlers          (no database: the shim's own cost stands out)
  GetTask        gRPC  vs  GET /api/tasks/:name       (one database read)
and prints p50/p95 of each, the HTTP/gRPC ratios, and the added milliseconds. The direct gRPC call is
the floor. One client, keep-alive connections on both sides. Stops the server before it exits.

    python scripts/bench_shim.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
from google.protobuf import struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def quantiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49], q[94]


def wait_ready(http: httpx.Client, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if http.get("/api/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    options = parser.parse_args()

    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "SCHEDULE_DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}",
            "SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
            "SCHEDULE_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
            "SCHEDULE_LOG_LEVEL": "ERROR",
        }
        server = subprocess.Popen([sys.executable, str(ROOT / "server.py")], env=env)
        try:
            with (
                grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
                httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http,
            ):
                wait_ready(http)
                stub = pb_grpc.ScheduleServiceStub(channel)
                metadata = struct_pb2.Struct()
                metadata.update({"url": "http://127.0.0.1:9/"})
                stub.RegisterTask(
                    pb.RegisterTaskRequest(name="bench", schedule="@hourly", handler="http", metadata=metadata)
                )
                pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
                    "ListHandlers": (
                        lambda: stub.ListHandlers(pb.ListHandlersRequest()),
                        lambda: http.get("/api/handlers").raise_for_status(),
                    ),
                    "GetTask": (
                        lambda: stub.GetTask(pb.GetTaskRequest(name="bench")),
                        lambda: http.get("/api/tasks/bench").raise_for_status(),
                    ),
                }
                results: dict[str, tuple[list[float], list[float]]] = {}
                for name, (direct, shim) in pairs.items():
                    for _ in range(options.warmup):
                        direct()
                        shim()
                    grpc_ms: list[float] = []
                    http_ms: list[float] = []
                    for _ in range(options.calls):  # alternate, so drift hits both alike
                        grpc_ms.append(timed(direct))
                        http_ms.append(timed(shim))
                    results[name] = (grpc_ms, http_ms)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    print(f"\n{options.calls} calls each, one client, loopback, SQLite; floor = the direct gRPC call")
    print(
        f"{'':14} {'gRPC p50':>9} {'HTTP p50':>9} {'gRPC p95':>9} {'HTTP p95':>9} {'p50 ratio':>10} {'p95 ratio':>10}"
    )
    for name, (grpc_ms, http_ms) in results.items():
        g50, g95 = quantiles(grpc_ms)
        h50, h95 = quantiles(http_ms)
        print(
            f"{name:14} {g50:9.3f} {h50:9.3f} {g95:9.3f} {h95:9.3f} {h50 / g50:10.2f} {h95 / g95:10.2f}"
            f"   (+{h50 - g50:.3f} ms at p50)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
