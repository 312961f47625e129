"""What a task handler is: a named, importable piece of work configured by the task's metadata."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from schedule_grpc.domain.errors import HandlerFailed as HandlerFailed  # handlers raise it from here
from schedule_grpc.domain.models import JSON
from schedule_grpc.domain.models import Lane as Lane  # handlers and the executor name lanes from here
from schedule_grpc.handlers.data import HandlerData


@dataclass(frozen=True)
class HandlerContext:
    """Everything a handler learns about the execution it performs."""

    execution_id: str
    task_id: str
    task_name: str
    scheduled_for: datetime
    attempt: int
    metadata: Mapping[str, JSON]
    timeout: timedelta
    data: HandlerData
    """The databases the handler was configured with, opened through the store (``handlers.data``)."""

    @property
    def idempotency_key(self) -> str:
        """Same for every attempt of one occurrence, so a receiver can deduplicate."""
        return f"{self.task_id}:{self.scheduled_for.isoformat().replace('+00:00', 'Z')}"


class Handler(Protocol):
    """A task handler. Implementations keep no state between executions."""

    name: str
    description: str
    category: str

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        """Raises InvalidArgument naming the field (``metadata.<key>``) when metadata is unusable."""
        ...

    def run(self, context: HandlerContext) -> JSON:
        """Does the work; returns a JSON value saying what was done, or raises."""
        ...


class RemoteHandler(Handler, Protocol):
    """A handler whose work is a network call; declares ``lane = "remote"``.

    The executor's remote lane awaits ``run_async`` under the task's timeout and cancels it on
    ``CancelExecution`` and at shutdown; ``run`` stays for callers outside the executor.
    """

    lane: Lane

    async def run_async(self, context: HandlerContext) -> JSON:
        """Does the call; returns a JSON value saying what was done, or raises."""
        ...


def lane_of(handler: Handler) -> Lane:
    """The lane a handler runs in: ``remote`` only when it declares so and can be awaited."""
    if getattr(handler, "lane", "local") == "remote" and callable(getattr(handler, "run_async", None)):
        return "remote"
    return "local"
