"""Test helpers shared across the suite: an injected clock, a recording webhook receiver on loopback, the one
poll helper (``eventually``), rows built for the stores, a RegisterTask call and a /metrics scrape."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf import struct_pb2
from prometheus_client.parser import text_string_to_metric_families
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import Execution, ExecutionStatus, Task, Trigger

if TYPE_CHECKING:
    from schedule_grpc.app import Replica

T = TypeVar("T")
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = instant

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Webhook:
    """A real HTTP server on 127.0.0.1 that records requests and answers with ``status``."""

    status: int = 200
    reply: Any = field(default_factory=lambda: {"ok": True})
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                webhook.requests.append(
                    Received(self.command, self.path, dict(self.headers), json.loads(raw) if raw else None)
                )
                if webhook.delay_s:
                    threading.Event().wait(webhook.delay_s)
                payload = json.dumps(webhook.reply).encode()
                self.send_response(webhook.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def eventually(probe: Callable[[], T | None], timeout_s: float = 15.0) -> T:
    """Polls ``probe`` until it returns something truthy, and returns it; fails the test after ``timeout_s``.

    For work the service does on its own threads in real time (the executor, the engine's reconcile):
    they react in milliseconds, so this never waits for a schedule."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout_s:g} s")
        time.sleep(0.02)


def make_task(name: str = "t") -> Task:
    """An enabled hourly ``http`` task, created at NOW, for the stores."""
    return Task(
        id=new_id("task"),
        name=name,
        schedule="@hourly",
        handler="http",
        enabled=True,
        metadata={"url": "http://x"},
        timezone="UTC",
        created_at=NOW,
        updated_at=NOW,
    )


def make_execution(task: Task, trigger: Trigger, scheduled_for: datetime, attempt: int = 1) -> Execution:
    """A pending execution of ``task`` due at ``scheduled_for``."""
    return Execution(
        id=new_id("exec"),
        task_id=task.id,
        task_name=task.name,
        trigger=trigger,
        scheduled_for=scheduled_for,
        attempt=attempt,
        status=ExecutionStatus.PENDING,
        due_at=scheduled_for,
        created_at=NOW,
    )


def register_task(stub: pb_grpc.ScheduleServiceStub, name: str, handler: str, **fields: Any) -> pb.Task:
    """RegisterTask of an hourly task; ``metadata`` and the other request fields by keyword."""
    metadata = struct_pb2.Struct()
    metadata.update(fields.pop("metadata", {}))
    request = pb.RegisterTaskRequest(name=name, schedule="@hourly", handler=handler, metadata=metadata, **fields)
    return stub.RegisterTask(request).task


def scrape(service: Replica) -> Metrics:
    """Every sample of the service's /metrics, by name and labels."""
    url = f"http://127.0.0.1:{service.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_when(service: Replica, key: tuple[str, tuple[tuple[str, str], ...]], value: float) -> Metrics:
    """A scrape that shows ``value`` for ``key``, or the last one after 10 s (the caller's assertion shows it).
    On Postgres an event is read once every transaction older than it (in the whole cluster) has ended, so a
    scrape right after a commit may not count it yet."""

    def showing() -> Metrics | None:
        metrics = scrape(service)
        return metrics if metrics.get(key) == value else None

    try:
        return eventually(showing, timeout_s=10)
    except AssertionError:
        return scrape(service)
