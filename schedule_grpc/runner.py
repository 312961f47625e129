"""Runs one handler call and turns what happened into an Outcome (status, result or categorised error)."""

from __future__ import annotations

import json
import traceback

from schedule_grpc.clock import Clock
from schedule_grpc.handlers.base import Handler, HandlerContext, HandlerFailed
from schedule_grpc.models import ErrorCategory, ExecutionStatus, Outcome


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


def run_handler(handler: Handler, context: HandlerContext, clock: Clock) -> Outcome:
    """Calls the handler in this thread and records how it ended."""
    try:
        result = handler.run(context)
        json.dumps(result)  # the result is stored as JSON: refuse what cannot be
    except Exception as error:
        return Outcome(
            status=ExecutionStatus.FAILED,
            completed_at=clock.now(),
            error=str(error) if isinstance(error, HandlerFailed) else f"{type(error).__name__}: {error}",
            error_category=categorize(error),
            traceback=traceback.format_exc(),
        )
    return Outcome(status=ExecutionStatus.SUCCESS, completed_at=clock.now(), result=result)
