"""The remote lane: handlers whose work is a network call, as asyncio tasks on one event loop.

The loop runs in a thread of the replica. Many executions are in flight at once (the executor bounds
how many); each is awaited under its task's timeout and can be cancelled from any thread. Handlers may
keep per-loop resources (a connection pool): the lane calls their optional ``async close()`` on its
loop before the loop stops.

Isolation: none between remote executions beyond the asyncio task (they share the replica's process,
memory and loop), which is why only handlers that declare ``lane = "remote"`` run here: their work
happens elsewhere, and what they hold is a socket and a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from schedule_grpc.execution.runner import Attempt, call_remote
from schedule_grpc.handlers.base import HandlerContext, RemoteHandler
from schedule_grpc.observability import logs

log = logging.getLogger(__name__)


class RemoteRun:
    """One execution on the lane's loop; ``cancel()`` from any thread stops it."""

    def __init__(self, future: concurrent.futures.Future[Attempt]) -> None:
        self._future = future

    def cancel(self) -> None:
        self._future.cancel()


class RemoteLane:
    """One asyncio event loop in a thread, running remote handlers concurrently."""

    def __init__(self, handlers: Sequence[RemoteHandler]) -> None:
        self._handlers = list(handlers)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="remote-lane", daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def run(
        self,
        handler: RemoteHandler,
        context: HandlerContext,
        done: Callable[[Attempt | None], None],
    ) -> RemoteRun:
        """Starts ``handler`` on the loop; ``done`` gets its attempt (None when it was cancelled), on the loop."""
        future = asyncio.run_coroutine_threadsafe(_bound(handler, context), self._loop)

        def finished(f: concurrent.futures.Future[Attempt]) -> None:
            done(None if f.cancelled() else f.result())

        future.add_done_callback(finished)
        return RemoteRun(future)

    def stop(self) -> None:
        """Cancels what still runs, lets handlers close their resources, stops the loop."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _close(self) -> None:
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for handler in self._handlers:
            close: Any = getattr(handler, "close", None)
            if close is None:
                continue
            try:
                await close()
            except Exception:
                log.exception("a remote handler failed to close", extra={"handler": handler.name})


async def _bound(handler: RemoteHandler, context: HandlerContext) -> Attempt:
    with logs.bind(task_id=context.task_id, task_name=context.task_name, execution_id=context.execution_id):
        return await call_remote(handler, context)
