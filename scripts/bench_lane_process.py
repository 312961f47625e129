"""For the benchmark only: the remote lane's event loop in a child process instead of a thread.

Same interface as ``schedule_grpc.execution.remote_lane.RemoteLane`` (start, prepare, submit, run,
stop); ``bench_remote.py`` swaps it in when ``BENCH_REMOTE_LOOP=process``, so ``bench_executor.py`` can
compare where the loop runs by the RPC latency served beside a burst. Each execution is one pipe message each way.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from schedule_grpc.execution.runner import Attempt, call_remote
from schedule_grpc.handlers.base import HandlerContext, RemoteHandler


class RemoteRun:
    def __init__(self, lane: ProcessRemoteLane, execution_id: str, message: Any = None) -> None:
        self._lane, self._id = lane, execution_id
        self.message = message

    def cancel(self) -> None:
        self._lane.cancel(self._id)


class ProcessRemoteLane:
    def __init__(self, handlers: Sequence[RemoteHandler]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe(duplex=True)
        self._process = context.Process(target=_serve, args=(child, list(handlers)), daemon=True)
        self._child = child
        self._send_lock = threading.Lock()
        self._done: dict[str, Callable[[Attempt | None], None]] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        self._process.start()
        self._child.close()
        self._reader.start()

    def prepare(
        self, handler: RemoteHandler, context: HandlerContext, done: Callable[[Attempt | None], None]
    ) -> RemoteRun:
        with self._lock:
            self._done[context.execution_id] = done
        return RemoteRun(self, context.execution_id, ("run", handler.name, context))

    def submit(self, runs: Sequence[RemoteRun]) -> None:
        for run in runs:
            self._send(run.message)

    def run(self, handler: RemoteHandler, context: HandlerContext, done: Callable[[Attempt | None], None]) -> RemoteRun:
        run = self.prepare(handler, context, done)
        self.submit([run])
        return run

    def cancel(self, execution_id: str) -> None:
        self._send(("cancel", execution_id))

    def stop(self) -> None:
        self._send(("stop",))
        self._process.join(10)
        self._reader.join(5)

    def _send(self, message: Any) -> None:
        with self._send_lock:
            self._conn.send(message)

    def _read(self) -> None:
        while True:
            try:
                execution_id, attempt = self._conn.recv()
            except (EOFError, OSError):
                return
            with self._lock:
                done = self._done.pop(execution_id, None)
            if done is not None:
                done(attempt)


def _serve(conn: Connection, handlers: list[RemoteHandler]) -> None:
    by_name = {h.name: h for h in handlers}
    asyncio.run(_loop(conn, by_name))


async def _loop(conn: Connection, handlers: dict[str, RemoteHandler]) -> None:
    loop = asyncio.get_running_loop()
    running: dict[str, asyncio.Task[Attempt]] = {}
    stopped = asyncio.Event()

    def finished(execution_id: str, task: asyncio.Task[Attempt]) -> None:
        running.pop(execution_id, None)
        conn.send((execution_id, None if task.cancelled() else task.result()))

    def readable() -> None:
        while conn.poll():
            message = conn.recv()
            if message[0] == "run":
                _, name, context = message
                task = loop.create_task(call_remote(handlers[name], context))
                running[context.execution_id] = task
                task.add_done_callback(functools.partial(finished, context.execution_id))
            elif message[0] == "cancel":
                found = running.get(message[1])
                if found is not None:
                    found.cancel()
            else:
                stopped.set()
                return

    loop.add_reader(conn.fileno(), readable)
    await stopped.wait()
    for task in list(running.values()):
        task.cancel()
    await asyncio.gather(*running.values(), return_exceptions=True)
    for handler in handlers.values():
        close = getattr(handler, "close", None)
        if close is not None:
            await close()
