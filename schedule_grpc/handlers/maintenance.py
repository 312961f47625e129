"""The ``cleanup-execution-history`` handler: the retention of executions, dead letters and events.

The deletions are the Retention use case's; the handler is given them as a ``HistoryPurge`` (built by
the composition root), so it reaches neither the use case nor the store itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON
from schedule_grpc.handlers.base import HandlerContext

TASK_NAME = "cleanup-execution-history"
_KNOWN = frozenset({"description", "category"})


class PurgeReport(Protocol):
    """What one retention run deleted, by table; ``complete`` is false when it stopped at its batch limit."""

    @property
    def task_executions(self) -> int: ...
    @property
    def dead_letters(self) -> int: ...
    @property
    def execution_events(self) -> int: ...
    @property
    def complete(self) -> bool: ...


class HistoryPurge(Protocol):
    """One retention run as of ``now``. Picklable: the handler runs in a worker process."""

    def __call__(self, now: datetime) -> PurgeReport: ...


class HistoryCleanupHandler:
    """Deletes history past its retention, in bounded batches.

    It runs in a worker process like every handler, so it holds only the picklable purge (the database
    URL and the policy). "Now" is the occurrence's scheduled instant, so a retry deletes the same rows.
    The replica's metrics learn what it deleted from the recorded result (``Observability.recorded``).
    """

    name = TASK_NAME
    category = "maintenance"
    description = (
        "Deletes finished executions older than their retention (SCHEDULE_EXECUTION_RETENTION_DAYS, or the "
        "task's history_retention), dead letters (SCHEDULE_DEAD_LETTER_RETENTION_DAYS) and execution events "
        "(SCHEDULE_EVENT_RETENTION_DAYS), in batches. Metadata: only description and category."
    )

    def __init__(self, purge: HistoryPurge) -> None:
        self.purge = purge

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        unknown = sorted(set(metadata) - _KNOWN)
        if unknown:
            raise InvalidArgument(f"metadata.{unknown[0]}", "is not read by cleanup-execution-history")

    def run(self, context: HandlerContext) -> JSON:
        report = self.purge(context.scheduled_for)
        return {
            "deletedExecutions": report.task_executions,
            "deletedDeadLetters": report.dead_letters,
            "deletedEvents": report.execution_events,
            "complete": report.complete,
        }
