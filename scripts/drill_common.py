"""Shared pieces of the scheduling drills: a fresh database, replica processes, task rows."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
_MIGRATE = "import sys; from schedule_grpc.store import db; db.migrate(db.make_engine(sys.argv[1]))"


def fresh_database(admin_url: str, name: str) -> str:
    """Drops and creates ``name``, migrates it; returns its psycopg conninfo."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    subprocess.run(
        [sys.executable, "-c", _MIGRATE, sqlalchemy_url(url)],
        check=True,
        cwd=ROOT,
    )
    return url


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlalchemy_url(conninfo: str) -> str:
    p = psycopg.conninfo.conninfo_to_dict(conninfo)
    auth = str(p.get("user") or "postgres") + (f":{p['password']}" if p.get("password") else "")
    return f"postgresql+psycopg://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p['dbname']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def insert_tasks(
    conn: psycopg.Connection[Any], prefix: str, count: int, schedule: str, next_run: datetime, enabled: bool = True
) -> None:
    """``count`` http tasks named prefix-N (their handler is never run by the scheduling engine)."""
    conn.execute(
        """
        INSERT INTO scheduled_tasks (id, name, schedule, timezone, handler, enabled, metadata, next_run, created_at,
            updated_at, retry_max, retry_initial_delay_s, retry_multiplier, retry_max_delay_s, retry_jitter,
            timeout_s, overlap_policy, catchup_window_s, critical)
        SELECT %(p)s || '-id-' || i, %(p)s || '-' || i, %(s)s, 'UTC', 'http', %(e)s, '{"url": "http://127.0.0.1:9/"}',
               %(n)s, now(), now(), 0, 1, 2, 3600, false, 300, 'allow', 3600, false
        FROM generate_series(1, %(c)s) AS i
        """,
        {"p": prefix, "s": schedule, "e": enabled, "n": next_run, "c": count},
    )


def start_replica(conninfo: str, replica_id: str, log: IO[bytes], **env: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "SCHEDULE_DATABASE_URL": sqlalchemy_url(conninfo),
        "SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "SCHEDULE_METRICS_ADDRESS": "off",
        "SCHEDULE_REPLICA_ID": replica_id,
        "SCHEDULE_MIGRATE_ON_START": "false",
        "SCHEDULE_EGRESS_ALLOW": "127.0.0.0/8",  # the drills' webhook receivers are on loopback
        **env,
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "server.py")], cwd=ROOT, env=environment, stdout=log, stderr=log
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def next_minute(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


def sleep_until(instant: datetime) -> None:
    delay = (instant - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def percentiles(samples: list[float]) -> tuple[float, float, float, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return at(0.50), at(0.95), at(0.99), ordered[-1]


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops the processes a script started."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


class Processes:
    """Child processes that all stop when the ``with`` block ends, however it ends (error, Ctrl-C)."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def add(self, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.children.append(process)
        return process

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.children:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def replica_env(grpc_port: int, **env: str) -> dict[str, str]:
    """Settings for a drill replica on loopback: the gRPC port, and no metrics port when the service has one."""
    return {"SCHEDULE_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}", "SCHEDULE_METRICS_ADDRESS": "off", **env}


def wait_serving(address: str, timeout_s: float) -> bool:
    """Polls grpc.health.v1 Check on ``address`` until SERVING (True) or the timeout (False)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.02)
    return False


def wait_log_line(path: Path, needle: str, timeout_s: float, start: int = 0) -> str | None:
    """The first line of the log file at ``path`` (from byte ``start``) containing ``needle``, polling."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            f.seek(start)
            for line in f.read().decode(errors="replace").splitlines():
                if needle in line:
                    return line
        time.sleep(0.02)
    return None


def rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (from /proc), None once it is gone."""
    from perf_stats import parse_vmrss_kib

    try:
        with open(f"/proc/{pid}/status") as f:
            kib = parse_vmrss_kib(f.read())
    except OSError:
        return None
    return None if kib is None else kib / 1024


class RssSampler:
    """Samples the RSS of named processes every ``interval_s`` in a thread: name -> [(seconds, MiB)]."""

    def __init__(self, pids: dict[str, int], interval_s: float) -> None:
        import threading

        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self._pids = pids
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self._pids.items():
                value = rss_mib(pid)
                if value is not None:
                    self.samples[name].append((time.monotonic() - self._t0, value))
            self._stop.wait(self._interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Receiver:
    """A loopback HTTP receiver for webhook tasks: records each request's receipt time and headers."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = list[tuple[float, dict[str, str]]]()
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                at = time.time()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append((at, dict(self.headers.items())))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def insert_hourly_tasks(
    conn: psycopg.Connection[Any], prefix: str, first: int, count: int, now: datetime, handler: str = "http"
) -> None:
    """Tasks prefix-NNNNNN for N in [first, first + count), task N at minute N % 60 of every hour.

    Their next_run is set as RegisterTask sets it (the next instant after ``now``). One statement:
    100,000 rows take a few seconds.
    """
    conn.execute(
        """
        INSERT INTO scheduled_tasks (id, name, schedule, timezone, handler, enabled, metadata, next_run, created_at,
            updated_at, retry_max, retry_initial_delay_s, retry_multiplier, retry_max_delay_s, retry_jitter,
            timeout_s, overlap_policy, catchup_window_s, critical)
        SELECT %(p)s || '-id-' || lpad(i::text, 6, '0'), %(p)s || '-' || lpad(i::text, 6, '0'), (i %% 60) || ' * * * *',
               'UTC', %(h)s, true, '{"url": "http://127.0.0.1:9/"}',
               m + CASE WHEN m > %(n)s THEN interval '0' ELSE interval '1 hour' END,
               now(), now(), 0, 1, 2, 3600, false, 300, 'allow', 3600, false
        FROM (SELECT i, date_trunc('hour', %(n)s::timestamptz) + (i %% 60) * interval '1 minute' AS m
              FROM generate_series(%(f)s::int, %(l)s::int) AS i) AS s
        """,
        {"p": prefix, "h": handler, "n": now, "f": first, "l": first + count - 1},
    )
