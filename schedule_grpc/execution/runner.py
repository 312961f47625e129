"""Runs one handler call and turns what happened into an Outcome (status, result or categorised error).

Also the outcomes of the ways an attempt can end without the handler saying so: it ran past its
timeout, its worker process died, or the replica running it stopped.
"""

from __future__ import annotations

import asyncio
import json
import signal
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta

from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.models import JSON, ErrorCategory, Execution, ExecutionStatus, Outcome, Task
from schedule_grpc.handlers.base import Handler, HandlerContext, HandlerFailed, RemoteHandler
from schedule_grpc.security import secrets
from schedule_grpc.store.handler_data import HANDLER_DATA


@dataclass(frozen=True)
class Attempt:
    """How a handler call ended, before the instant is stamped (a worker process has no clock)."""

    status: ExecutionStatus
    result: JSON = None
    error: str | None = None
    error_category: ErrorCategory | None = None
    traceback: str | None = None

    def at(self, completed_at: datetime) -> Outcome:
        return Outcome(
            status=self.status,
            completed_at=completed_at,
            result=self.result,
            error=self.error,
            error_category=self.error_category,
            traceback=self.traceback,
        )


def categorize(error: BaseException) -> ErrorCategory:
    """The category of an exception raised by a handler."""
    if isinstance(error, HandlerFailed):
        return error.category
    if isinstance(error, TimeoutError):
        return ErrorCategory.TIMEOUT
    if isinstance(error, ConnectionError | OSError):
        return ErrorCategory.NETWORK
    if isinstance(error, MemoryError):
        return ErrorCategory.RESOURCE
    return ErrorCategory.LOGIC


def call_handler(handler: Handler, context: HandlerContext) -> Attempt:
    """Calls the handler in this thread and records how it ended."""
    try:
        result = handler.run(context)
        json.dumps(result)  # the result is stored as JSON: refuse what cannot be
    except MemoryError as error:
        # Formatting a traceback needs memory too; drop what the handler held first.
        del error
        return Attempt(
            status=ExecutionStatus.FAILED,
            error="MemoryError: the handler exceeded its memory limit",
            error_category=ErrorCategory.RESOURCE,
            traceback=traceback.format_exc(),
        )
    except Exception as error:
        return failed(error)
    return Attempt(status=ExecutionStatus.SUCCESS, result=result)


async def call_remote(handler: RemoteHandler, context: HandlerContext) -> Attempt:
    """Awaits a remote handler under the task's timeout and records how it ended (cancellation propagates)."""
    try:
        async with asyncio.timeout(context.timeout.total_seconds()) as deadline:
            result = await handler.run_async(context)
        json.dumps(result)
    except TimeoutError as error:
        return timed_out(context.timeout) if deadline.expired() else failed(error)
    except Exception as error:
        return failed(error)
    return Attempt(status=ExecutionStatus.SUCCESS, result=result)


def failed(error: Exception) -> Attempt:
    """The attempt of a handler that raised ``error`` (called in its ``except`` block, for the traceback)."""
    return Attempt(
        status=ExecutionStatus.FAILED,
        error=str(error) if isinstance(error, HandlerFailed) else f"{type(error).__name__}: {error}",
        error_category=categorize(error),
        traceback=traceback.format_exc(),
    )


def run_handler(handler: Handler, context: HandlerContext, clock: Clock) -> Outcome:
    """Calls the handler in this thread; the outcome is stamped with ``clock``."""
    return call_handler(handler, context).at(clock.now())


def timed_out(timeout: timedelta) -> Attempt:
    """The handler ran past the task's timeout and was stopped."""
    return Attempt(
        status=ExecutionStatus.FAILED,
        error=f"timed out: the handler ran past the task's timeout of {timeout.total_seconds():g}s and was stopped",
        error_category=ErrorCategory.TIMEOUT,
    )


def worker_died(exitcode: int | None) -> Attempt:
    """The worker process ended without reporting (a crash, os._exit, the OOM killer)."""
    if exitcode is not None and exitcode < 0:
        try:
            how = f"was killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited with code {exitcode}"
    return Attempt(
        status=ExecutionStatus.FAILED,
        error=f"crashed: the handler's worker process {how} before reporting an outcome",
        error_category=ErrorCategory.RESOURCE,
    )


def replica_lost(owner: str | None, lease_expires_at: datetime | None) -> Attempt:
    """The replica running the execution stopped renewing its lease (it died or lost the database)."""
    when = lease_expires_at.isoformat() if lease_expires_at else "unknown"
    return Attempt(
        status=ExecutionStatus.FAILED,
        error=f"lost: the replica running it ({owner or 'unknown'}) stopped renewing its lease, expired at {when}",
        error_category=ErrorCategory.RESOURCE,
    )


def replica_stopped(owner: str) -> Attempt:
    """The replica shut down before the handler finished and stopped it."""
    return Attempt(
        status=ExecutionStatus.FAILED,
        error=f"interrupted: the replica running it ({owner}) shut down before the handler finished",
        error_category=ErrorCategory.RESOURCE,
    )


def handler_context(execution: Execution, task: Task, secrets_dir: str = "") -> HandlerContext:
    """What the handler of ``execution`` learns about it, the task's secret references resolved.

    Raises SecretUnavailable when a referenced secret file cannot be read.
    """
    return HandlerContext(
        execution_id=execution.id,
        task_id=task.id,
        task_name=task.name,
        scheduled_for=execution.scheduled_for,
        attempt=execution.attempt,
        metadata=secrets.resolve(task.metadata, secrets_dir),
        timeout=task.timeout,
        data=HANDLER_DATA,
    )
