"""The remote lane: handlers whose work is a network call, as asyncio tasks on one event loop.

The loop runs in a thread of the replica. Many executions are in flight at once (the executor bounds
how many); each is awaited under its task's timeout and can be cancelled from any thread. Handlers may
keep per-loop resources (a connection pool): the lane calls their optional ``async close()`` on its
loop before the loop stops.

Isolation: none between remote executions beyond the asyncio task (they share the replica's process,
memory and loop), which is why only handlers that declare ``lane = "remote"`` run here: their work
happens elsewhere, and what they hold is a socket and a deadline.

The loop runs in a thread of the replica, not in a child process. Measured both ways
with ``scripts/bench_executor.py`` (1,000 webhooks due at one instant, loopback receiver, 2 shared
cores; the child-process lane is ``scripts/bench_lane_process.py``): the replica spends ~0.45-0.6 ms
of CPU per remote execution in a thread, the call included (a bare asyncio client spends ~0.2 ms on
the same POST), and the burst is over in under a second. GetTask served beside it went from p95
~1.5-3 ms idle to p95 24-37 ms during that second with the loop in a thread, and 21-33 ms with it in
a child process: no difference the noise of a shared machine lets one see, since the claims, the
records and the child itself share the same two cores. The child costs a second copy of the handlers
and their configuration, a pipe message per execution each way and a process to supervise; the
thread is the better buy. (The old executor, a worker process per webhook: p95 21-26 ms for the
15 s its burst lasted.)
"""

from __future__ import annotations

import asyncio
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
    """One execution for the lane's loop; ``cancel()`` from any thread stops it, before it starts or while it runs."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        handler: RemoteHandler,
        context: HandlerContext,
        done: Callable[[Attempt | None], None],
    ) -> None:
        self._loop = loop
        self._handler = handler
        self._context = context
        self._done = done
        self._task: asyncio.Task[Attempt] | None = None
        self._cancelled = False  # read on the loop when the run starts

    def cancel(self) -> None:
        self._cancelled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs any more
            self._loop.call_soon_threadsafe(self._cancel_on_loop)

    def _cancel_on_loop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _start(self) -> None:
        if self._cancelled:
            self._done(None)
            return
        self._task = self._loop.create_task(_bound(self._handler, self._context))
        self._task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Attempt]) -> None:
        self._done(None if task.cancelled() or task.exception() is not None else task.result())


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

    def prepare(
        self,
        handler: RemoteHandler,
        context: HandlerContext,
        done: Callable[[Attempt | None], None],
    ) -> RemoteRun:
        """A run of ``handler``, started by ``submit``; ``done`` gets its attempt (None when it was cancelled),
        on the loop."""
        return RemoteRun(self._loop, handler, context, done)

    def submit(self, runs: Sequence[RemoteRun], delay_s: float = 0.0) -> None:
        """Starts ``runs`` on the loop (after ``delay_s``), all in one hand-over: a burst's batch wakes the loop
        once, instead of once per execution with a future chained to each (measured: ~10% of the replica's time
        in a burst of 1,000 went to the per-execution hand-over). A run cancelled meanwhile never starts."""
        if delay_s > 0:
            self._loop.call_soon_threadsafe(self._loop.call_later, delay_s, _start_all, list(runs))
        else:
            self._loop.call_soon_threadsafe(_start_all, list(runs))

    def run(
        self,
        handler: RemoteHandler,
        context: HandlerContext,
        done: Callable[[Attempt | None], None],
    ) -> RemoteRun:
        """Starts ``handler`` on the loop; ``done`` gets its attempt (None when it was cancelled), on the loop."""
        run = self.prepare(handler, context, done)
        self.submit([run])
        return run

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


def _start_all(runs: list[RemoteRun]) -> None:
    for run in runs:
        run._start()


async def _bound(handler: RemoteHandler, context: HandlerContext) -> Attempt:
    with logs.bind(task_id=context.task_id, task_name=context.task_name, execution_id=context.execution_id):
        return await call_remote(handler, context)
