"""The ``cleanup-execution-history`` handler: the retention of executions, dead letters and events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON
from schedule_grpc.handlers.base import HandlerContext
from schedule_grpc.store import platform
from schedule_grpc.store.events import EventStore
from schedule_grpc.store.retention import RetentionStore
from schedule_grpc.usecases.retention import TASK_NAME, Retention, RetentionPolicy

_KNOWN = frozenset({"description", "category"})


@dataclass(frozen=True)
class _At:
    """The clock of one run: "now" is the occurrence's scheduled instant, so a retry deletes the same rows."""

    instant: datetime

    def now(self) -> datetime:
        return self.instant


class HistoryCleanupHandler:
    """Deletes history past its retention, in bounded batches.

    It runs in a worker process like every handler, so it holds only the database URL and the policy
    and opens its own small engine per run. The replica's metrics learn what it deleted from the
    recorded result (``Observability.recorded``).
    """

    name = TASK_NAME
    category = "maintenance"
    description = (
        "Deletes finished executions older than their retention (SCHEDULE_EXECUTION_RETENTION_DAYS, or the "
        "task's history_retention), dead letters (SCHEDULE_DEAD_LETTER_RETENTION_DAYS) and execution events "
        "(SCHEDULE_EVENT_RETENTION_DAYS), in batches. Metadata: only description and category."
    )

    def __init__(self, database_url: str, policy: RetentionPolicy) -> None:
        self.database_url = database_url
        self.policy = policy

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        unknown = sorted(set(metadata) - _KNOWN)
        if unknown:
            raise InvalidArgument(f"metadata.{unknown[0]}", "is not read by cleanup-execution-history")

    def run(self, context: HandlerContext) -> JSON:
        with platform.connect(self.database_url) as engine:
            retention = Retention(RetentionStore(engine), EventStore(engine), self.policy, _At(context.scheduled_for))
            report = retention.run()
        return {
            "deletedExecutions": report.task_executions,
            "deletedDeadLetters": report.dead_letters,
            "deletedEvents": report.execution_events,
            "complete": report.complete,
        }
