"""The webhook receiver of scripts/compare.py, in a process of its own (aiohttp.web on loopback).

It records the receipt time, ``X-Schedule-Scheduled-For``, ``X-Schedule-Task`` and ``Idempotency-Key``
of every POST to ``/hook`` (answered at once) or ``/slow`` (answered after --slow-s seconds, the
receipt recorded on arrival), and serves them back as JSON on ``GET /receipts?prefix=...``. In its own
process it neither competes for the measuring process's interpreter nor slows down under a burst the
way a thread-per-connection server does.

    python scripts/webhook_receiver.py --port-file PATH [--slow-s 2]

``Receiver`` starts and stops it from another script; ``post`` is the plain POST the peers' jobs make.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

Receipt = tuple[float, str, str, str]  # (received at, scheduled for, task, idempotency key)


def serve(port_file: Path, slow_s: float) -> None:
    from aiohttp import web

    receipts: list[Receipt] = []

    async def record(request: web.Request) -> None:
        at = time.time()
        await request.read()
        headers = request.headers
        receipts.append(
            (
                at,
                headers.get("X-Schedule-Scheduled-For", ""),
                headers.get("X-Schedule-Task", ""),
                headers.get("Idempotency-Key", ""),
            )
        )

    async def hook(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"ok": True})

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(slow_s)
        return web.json_response({"ok": True})

    async def listing(request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        return web.json_response([r for r in receipts if r[2].startswith(prefix)])

    async def main() -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/hook", hook)
        app.router.add_post("/slow", slow)
        app.router.add_get("/receipts", listing)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port_file.write_text(str(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


def post(url: str, scheduled_for: str, task: str) -> None:
    """One webhook POST as a peer's job makes it (urllib, blocking)."""
    request = urllib.request.Request(
        url,
        data=b"{}",
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Schedule-Scheduled-For": scheduled_for,
            "X-Schedule-Task": task,
            "Idempotency-Key": f"{task}:{scheduled_for}",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


class Receiver:
    """Runs the receiver process for a ``with`` block."""

    def __init__(self, slow_s: float = 2.0) -> None:
        self.slow_s = slow_s
        self._tmp = tempfile.TemporaryDirectory()
        self._process: subprocess.Popen[bytes] | None = None
        self.base = ""

    def __enter__(self) -> Receiver:
        port_file = Path(self._tmp.name) / "port"
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--port-file", str(port_file), "--slow-s", str(self.slow_s)]
        )
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{port_file.read_text()}"
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._tmp.cleanup()

    @property
    def url(self) -> str:
        return f"{self.base}/hook"

    @property
    def slow_url(self) -> str:
        return f"{self.base}/slow"

    def receipts(self, prefix: str) -> list[Receipt]:
        with urllib.request.urlopen(f"{self.base}/receipts?prefix={prefix}", timeout=30) as response:
            rows: list[Any] = json.loads(response.read())
        return [(float(a), str(s), str(t), str(k)) for a, s, t, k in rows]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--slow-s", type=float, default=2.0)
    options = parser.parse_args()
    serve(Path(options.port_file), min(max(options.slow_s, 0.0), 60.0))
