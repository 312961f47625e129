"""The ``cleanup-execution-history`` handler: the retention of executions, dead letters and events."""

from __future__ import annotations

from collections.abc import Mapping

from schedule_grpc.errors import InvalidArgument
from schedule_grpc.handlers.base import HandlerContext
from schedule_grpc.models import JSON
from schedule_grpc.retention import TASK_NAME, RetentionService

_KNOWN = frozenset({"description", "category"})


class HistoryCleanupHandler:
    """Deletes history past its retention, in bounded batches."""

    name = TASK_NAME
    category = "maintenance"
    description = (
        "Deletes finished executions older than their retention (SCHEDULE_EXECUTION_RETENTION_DAYS, or the "
        "task's history_retention), dead letters (SCHEDULE_DEAD_LETTER_RETENTION_DAYS) and execution events "
        "(SCHEDULE_EVENT_RETENTION_DAYS), in batches. Metadata: only description and category."
    )

    def __init__(self, retention: RetentionService) -> None:
        self._retention = retention

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        unknown = sorted(set(metadata) - _KNOWN)
        if unknown:
            raise InvalidArgument(f"metadata.{unknown[0]}", "is not read by cleanup-execution-history")

    def run(self, context: HandlerContext) -> JSON:
        report = self._retention.run()
        return {
            "deletedExecutions": report.task_executions,
            "deletedDeadLetters": report.dead_letters,
            "deletedEvents": report.execution_events,
            "complete": report.complete,
        }
