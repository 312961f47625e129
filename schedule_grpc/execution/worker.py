"""Handlers run outside the server's threads: one worker process per execution.

Each process serves exactly one execution and exits, so nothing a handler leaves behind (globals,
threads, open files, a corrupted heap) reaches the next one. Processes are forked from a small fork
server (never from the multi-threaded server process) and started ahead of need, so an execution does
not wait for a process to start. Before the handler runs, the process caps its own address space to
its baseline plus the task's memory limit, so an allocation past the limit raises MemoryError in the
handler instead of growing the host. A process that dies (segfault, ``os._exit``, the OOM killer)
ends only its own attempt; a process whose replica dies stops too: it watches its pipe to the replica.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import queue
import resource
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from schedule_grpc.domain.models import ErrorCategory, ExecutionStatus
from schedule_grpc.execution.runner import Attempt, call_handler, worker_died
from schedule_grpc.handlers.base import Handler, HandlerContext
from schedule_grpc.observability import logs

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Assignment:
    """What a worker process needs: the handler object, its context and the memory it may use."""

    handler: Handler
    context: HandlerContext
    memory_limit_mb: int | None


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent (the fork server) exits."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _limit_memory(limit_mb: int | None) -> None:
    """Caps the address space at what the process uses now plus ``limit_mb``."""
    if not limit_mb:
        return
    try:
        with open("/proc/self/statm") as statm:
            baseline = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = baseline + limit_mb * MIB
    if hard != resource.RLIM_INFINITY:  # pragma: no cover - depends on the host
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _exit_when_orphaned(conn: Connection) -> None:  # pragma: no cover - runs in the worker process
    """The server never writes twice: the pipe turns readable only when the server process is gone."""
    with contextlib.suppress(Exception):
        conn.poll(None)
    os.kill(os.getpid(), signal.SIGKILL)


def _serve_one(conn: Connection) -> None:  # pragma: no cover - runs in the worker process
    """The worker process: wait for one assignment, run it, report, exit."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us itself
    try:
        raw = conn.recv_bytes()
    except (EOFError, OSError):
        return  # the pool closed: no assignment for this process
    try:
        assignment: Assignment = pickle.loads(raw)
    except Exception as error:
        conn.send(
            Attempt(
                status=ExecutionStatus.FAILED,
                error=f"the handler could not be loaded in its worker process: {type(error).__name__}: {error}",
                error_category=ErrorCategory.LOGIC,
            )
        )
        return
    threading.Thread(target=_exit_when_orphaned, args=(conn,), daemon=True).start()
    _limit_memory(assignment.memory_limit_mb)
    context = assignment.context
    # what the handler (and the libraries it calls) logs carries the execution's ids
    with logs.bind(task_id=context.task_id, task_name=context.task_name, execution_id=context.execution_id):
        attempt = call_handler(assignment.handler, context)
    try:
        conn.send(attempt)
    except Exception as error:  # e.g. a traceback that cannot be pickled
        conn.send(
            Attempt(
                status=ExecutionStatus.FAILED,
                error=f"the outcome could not be reported: {type(error).__name__}: {error}",
                error_category=ErrorCategory.LOGIC,
            )
        )
    conn.close()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)  # skip interpreter teardown: nothing of this process is reused


_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Starts a worker without re-importing the program's main module in it.

    multiprocessing imports the parent's ``__main__`` (server.py and all it imports) in every new
    process, which costs far more than an execution; handlers are importable by name anyway, so the
    worker needs nothing from it. Hidden only while a process starts, under a lock.
    """
    main = sys.modules.get("__main__")
    if main is None:  # pragma: no cover
        yield
        return
    with _MAIN_LOCK:
        path = main.__dict__.pop("__file__", None)
        spec = main.__dict__.get("__spec__")
        main.__spec__ = None
        try:
            yield
        finally:
            main.__spec__ = spec
            if path is not None:
                main.__file__ = path


class Running:
    """One execution in its worker process."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self._process = process
        self._conn = conn

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def wait(self, timeout_s: float) -> Attempt | None:
        """The handler's attempt, or None while it still runs after ``timeout_s``."""
        try:
            if not self._conn.poll(max(timeout_s, 0.0)):
                return None
            attempt: Attempt = self._conn.recv()
        except (EOFError, OSError):
            self._process.join(5)
            return worker_died(self._process.exitcode)
        self._conn.close()
        # The process exits by itself right after reporting; the pool reaps it off this path.
        return attempt

    def kill(self) -> None:
        """Stops the handler at once (timeout, cancellation, shutdown)."""
        with contextlib.suppress(OSError, ValueError):
            self._process.kill()
        self._process.join(5)
        self._conn.close()


class WorkerPool:
    """Hands assignments to worker processes, keeping ``spares`` of them started ahead of need."""

    def __init__(self, spares: int, preload: Sequence[str] = ()) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["schedule_grpc.execution.worker", *preload])
        self._spares = spares
        self._idle: queue.Queue[tuple[BaseProcess, Connection]] = queue.Queue()
        self._wanted = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._refill, name="worker-pool", daemon=True)

    def start(self) -> None:
        self._wanted.set()
        self._thread.start()

    def run(self, assignment: Assignment) -> Running:
        """Starts ``assignment`` in a fresh worker process. Raises PicklingError if the assignment cannot be sent."""
        payload = pickle.dumps(assignment)
        while True:
            try:
                process, conn = self._idle.get_nowait()
            except queue.Empty:
                process, conn = self._start_one()
            self._wanted.set()
            try:
                conn.send_bytes(payload)
            except OSError:  # that spare died while idle: take another
                process.join(1)
                conn.close()
                continue
            return Running(process, conn)

    def stop(self) -> None:
        """Stops the spares (closing their pipe ends them)."""
        self._stopped.set()
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join(10)
        while True:
            try:
                process, conn = self._idle.get_nowait()
            except queue.Empty:
                break
            conn.close()
            process.join(2)
            if process.is_alive():  # pragma: no cover - a spare ignoring its closed pipe
                process.kill()
                process.join(2)

    def _start_one(self) -> tuple[BaseProcess, Connection]:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_serve_one, args=(child,), name="schedule-worker", daemon=True)
        with _main_module_hidden():
            process.start()
        child.close()
        return process, parent

    def _refill(self) -> None:
        while not self._stopped.is_set():
            self._wanted.wait(1.0)
            self._wanted.clear()
            self._context.active_children()  # reaps the processes that served their execution
            while not self._stopped.is_set() and self._idle.qsize() < self._spares:
                try:
                    self._idle.put(self._start_one())
                except Exception:  # pragma: no cover - cannot fork: run() starts one itself, or fails loudly
                    log.exception("could not start a worker process")
                    self._stopped.wait(1)
                    break
