"""A replica (``server.py``) with two more handlers: ``bench-post``, a minimal remote-lane webhook, and
``bench-post-local``, the same call run in the local lane (a worker process per execution).

It POSTs the execution id to ``metadata.url`` over a bare asyncio connection, so ``bench_executor.py``
measures the executor's own cost per execution, in each lane, with as little handler work as a
webhook can have.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from schedule_grpc.app import build
from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed, Lane
from schedule_grpc.observability import logs
from schedule_grpc.settings import Settings
from schedule_grpc.store.handler_data import HANDLER_DATA


class BenchPost:
    name = "bench-post"
    description = "POSTs the execution id to metadata.url (benchmark)"
    category = "benchmark"
    lane: Lane = "remote"

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        pass

    def run(self, context: HandlerContext) -> JSON:
        return asyncio.run(self.run_async(context))

    async def run_async(self, context: HandlerContext) -> JSON:
        url = urlsplit(str(context.metadata["url"]))
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            body = context.execution_id.encode()
            head = f"POST {url.path} HTTP/1.0\r\nHost: {url.netloc}\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
            status = await reader.readline()
            await reader.read()
        finally:
            writer.close()
        if not status:
            raise HandlerFailed("the receiver closed the connection", ErrorCategory.NETWORK)
        return int(status.split()[1])


class BenchPostLocal(BenchPost):
    name = "bench-post-local"
    lane: Lane = "local"


async def _floor(url: str, count: int) -> None:
    """The floor: ``count`` of the same POSTs at once (1,024 in flight) from one bare event loop."""
    handler = BenchPost()
    in_flight = asyncio.Semaphore(1024)  # as many as the remote lane's default

    async def one(i: int) -> None:
        context = HandlerContext(
            f"floor-{i}", "floor", "floor", datetime.now(UTC), 1, {"url": url}, timedelta(seconds=30), HANDLER_DATA
        )
        async with in_flight:
            await handler.run_async(context)

    await asyncio.gather(*(one(i) for i in range(count)))


def main() -> int:
    if os.environ.get("BENCH_SWITCH_S"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_S"]))
    if sys.argv[1:2] == ["--floor"]:
        at, started = time.time(), time.process_time()
        asyncio.run(_floor(sys.argv[2], int(sys.argv[3])))
        print(f"{at:.6f} {time.process_time() - started:.4f}")
        return 0
    # The handlers by their module's name, not __main__'s: the local one is pickled into worker processes.
    from bench_remote import BenchPost, BenchPostLocal

    settings = Settings.from_env(os.environ)
    logs.configure(settings.log_level, settings.log_format)
    if os.environ.get("BENCH_REMOTE_LOOP") == "process":
        from bench_lane_process import ProcessRemoteLane

        import schedule_grpc.execution.executor

        setattr(schedule_grpc.execution.executor, "RemoteLane", ProcessRemoteLane)  # noqa: B010 - swapped for the comparison
    registry = handler_registry(settings)
    registry.register(BenchPost())
    registry.register(BenchPostLocal())
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    service = build(settings, handlers=registry)
    service.start()
    stop.wait()
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
