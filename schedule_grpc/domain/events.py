"""Execution events: what happened to an execution, in the order readers see it.

The database produces them (triggers, migration 0007); this module only names them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from schedule_grpc.domain import tokens
from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import ErrorCategory, ExecutionStatus, Trigger


class EventKind(StrEnum):
    """What happened to an execution."""

    QUEUED = "queued"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    MISSED = "missed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


@dataclass(frozen=True, order=True)
class Position:
    """A place in the event stream: events are read in (tx, id) order. (0, 0) is the beginning."""

    tx: int = 0
    id: int = 0

    def encode(self) -> str:
        return tokens.encode("events", f"{self.tx}.{self.id}")

    @classmethod
    def decode(cls, cursor: str, field_name: str = "cursor") -> Position | None:
        """None for an empty cursor; INVALID_ARGUMENT naming ``field_name`` for a malformed one."""
        try:
            raw = tokens.decode(cursor, "events")
        except InvalidArgument:
            raise InvalidArgument(field_name, "is not a cursor returned by WatchExecutions") from None
        if raw is None:
            return None
        tx, _, event_id = raw.partition(".")
        if not (tx.isdigit() and event_id.isdigit()):
            raise InvalidArgument(field_name, "is not a cursor returned by WatchExecutions")
        return cls(int(tx), int(event_id))


@dataclass(frozen=True)
class ExecutionEvent:
    """One event, as stored."""

    position: Position
    kind: EventKind
    execution_id: str
    task_id: str
    task_name: str
    status: ExecutionStatus
    trigger: Trigger | None
    attempt: int
    occurred_at: datetime
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    duration_ms: int | None = None
    error_category: ErrorCategory | None = None


@dataclass(frozen=True)
class EventFilter:
    """Which events a watcher wants; an empty collection means "any"."""

    task_names: Collection[str] = field(default_factory=frozenset)
    kinds: Collection[EventKind] = field(default_factory=frozenset)
    statuses: Collection[ExecutionStatus] = field(default_factory=frozenset)
    # Only events of tasks owned by this caller (a ``service`` caller watches its own tasks only).
    owner: str | None = None
