"""The local lane: handlers that run Python over data, in a fresh worker process each, under a memory limit.

A thread of the replica waits for each worker process (up to ``concurrency`` processes at once, plus the
manual runs' headroom), kills it past the task's timeout, and hands what happened to the recorder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from schedule_grpc.domain.models import ErrorCategory, ExecutionStatus
from schedule_grpc.execution.runner import Attempt, timed_out
from schedule_grpc.execution.slots import Slot, Slots
from schedule_grpc.execution.worker import Assignment, WorkerPool
from schedule_grpc.handlers.base import Handler, HandlerContext
from schedule_grpc.observability import logs

log = logging.getLogger(__name__)


class LocalLane:
    """Runs local-lane handlers; ``done(slot, attempt)`` receives each outcome (None: stopped)."""

    def __init__(
        self,
        handlers: Sequence[Handler],
        slots: Slots,
        *,
        concurrency: int,
        headroom: int,
        memory_limit_mb: int,
        done: Callable[[Slot, Attempt | None], None],
    ) -> None:
        self._slots = slots
        self._memory_limit_mb = memory_limit_mb
        self._done = done
        self._pool = WorkerPool(concurrency, preload=sorted({type(h).__module__ for h in handlers}))
        self._threads = ThreadPoolExecutor(concurrency + headroom, thread_name_prefix="execution")

    def start(self) -> None:
        self._pool.start()

    def submit(self, slot: Slot, handler: Handler, context: HandlerContext) -> None:
        self._threads.submit(self._run, slot, handler, context)

    def drain(self) -> None:
        """Waits for the threads that wait for worker processes (after the slots were stopped)."""
        self._threads.shutdown(wait=True)

    def stop(self) -> None:
        self._pool.stop()

    def _run(self, slot: Slot, handler: Handler, context: HandlerContext) -> None:
        execution = slot.claimed.execution
        with logs.bind(task_id=execution.task_id, task_name=execution.task_name, execution_id=execution.id):
            try:
                attempt: Attempt | None = self._watch(slot, handler, context)
            except Exception as error:  # pragma: no cover - a bug here must not lose the slot
                log.exception("running an execution failed")
                attempt = Attempt(
                    status=ExecutionStatus.FAILED,
                    error=f"{type(error).__name__}: {error}",
                    error_category=ErrorCategory.LOGIC,
                )
        self._done(slot, attempt)

    def _watch(self, slot: Slot, handler: Handler, context: HandlerContext) -> Attempt | None:
        task = slot.claimed.task
        memory = task.memory_limit_mb or self._memory_limit_mb
        try:
            running = self._pool.run(Assignment(handler, context, memory))
        except Exception as error:
            return Attempt(
                status=ExecutionStatus.FAILED,
                error=f"the handler could not be sent to a worker process: {type(error).__name__}: {error}",
                error_category=ErrorCategory.LOGIC,
            )
        if self._slots.attach_local(slot, running):
            running.kill()
            return None
        attempt = running.wait(task.timeout.total_seconds())
        if attempt is None:
            running.kill()
            return timed_out(task.timeout)
        return attempt
