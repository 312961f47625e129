"""SIGTERM as an orchestrator sees it: NOT_SERVING at once and for the whole drain delay, while the port still
answers; then open streams end with UNAVAILABLE (reconnect elsewhere) and the process exits without waiting on them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
DRAIN_S = 1.5
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Ended = dict[str, tuple[grpc.StatusCode, float, list[Any]]]


def _drain(stream: Iterator[Any], ended: Ended, key: str) -> None:
    """Reads ``stream`` to its end; records its status code, when it came and the messages before it."""
    seen: list[Any] = []
    try:
        for message in stream:
            seen.append(message)
        ended[key] = (grpc.StatusCode.OK, time.monotonic(), seen)
    except grpc.RpcError as error:
        ended[key] = (error.code(), time.monotonic(), seen)


def test_sigterm_reports_not_serving_for_the_drain_then_ends_streams_with_unavailable(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SCHEDULE_DATABASE_URL": f"sqlite:///{tmp_path / 'schedule.db'}",
        "SCHEDULE_SHUTDOWN_GRACE_S": "10",  # longer than the test allows: open streams must not wait for it
        "SCHEDULE_SHUTDOWN_DRAIN_S": str(DRAIN_S),
        "SCHEDULE_METRICS_ADDRESS": "off",
        "SCHEDULE_ENGINE_ENABLED": "false",
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "server.py")], env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, "never became SERVING"
                time.sleep(0.05)
            ended: Ended = {}
            watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=60)
            events = pb_grpc.ScheduleServiceStub(channel).WatchExecutions(pb.WatchExecutionsRequest(), timeout=60)
            readers = [
                threading.Thread(target=_drain, args=(watch, ended, "health"), daemon=True),
                threading.Thread(target=_drain, args=(events, ended, "events"), daemon=True),
            ]
            for reader in readers:
                reader.start()
            time.sleep(0.3)  # both streams are open

            probes: list[tuple[float, int | None]] = []  # (seconds after SIGTERM, status or None: no answer)
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as probe_channel:  # a kubelet's probe loop
                probe = health_pb2_grpc.HealthStub(probe_channel)
                while time.monotonic() - sent < DRAIN_S + 5 and process.poll() is None:
                    try:
                        status: int | None = probe.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status
                    except grpc.RpcError:
                        status = None
                    probes.append((time.monotonic() - sent, status))
                    time.sleep(0.05)
            exit_code = process.wait(timeout=10)
            exited = time.monotonic() - sent
            for reader in readers:
                reader.join(timeout=5)
    finally:
        process.kill()

    assert exit_code == 0
    answered = [(at, status) for at, status in probes if status is not None]
    assert answered and all(status == NOT_SERVING for at, status in answered if at > 0.2), answered
    not_serving = [at for at, status in answered if status == NOT_SERVING]
    assert not_serving[0] < 0.3, "NOT_SERVING at once"
    assert not_serving[-1] >= DRAIN_S * 0.9, f"NOT_SERVING for the whole drain, last seen at {not_serving[-1]:.2f}s"
    assert exited < DRAIN_S + 3, f"exited {exited:.2f}s after SIGTERM: open streams held the shutdown"

    health_code, health_at, health_seen = ended["health"]
    assert health_code == grpc.StatusCode.UNAVAILABLE
    assert [m.status for m in health_seen] == [SERVING, NOT_SERVING]
    assert health_at - sent >= DRAIN_S * 0.9
    events_code, events_at, _ = ended["events"]
    assert events_code == grpc.StatusCode.UNAVAILABLE, "a stream ended by shutdown says reconnect, not done"
    assert DRAIN_S * 0.9 <= events_at - sent < DRAIN_S + 2
