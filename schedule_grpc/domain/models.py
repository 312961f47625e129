"""Domain types: tasks, executions and their policies. No transport, no storage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

JSON = Any  # any JSON value: dict, list, str, int, float, bool or None

T = TypeVar("T")


class ExecutionStatus(StrEnum):
    """Where an execution stands; the values are what the seed's JSON shows."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    MISSED = "missed"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


class Trigger(StrEnum):
    """What created an execution."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"


class ErrorCategory(StrEnum):
    """Kind of failure of a failed execution."""

    TIMEOUT = "timeout"
    NETWORK = "network"
    RESOURCE = "resource"
    LOGIC = "logic"
    POLICY = "policy"


class OverlapPolicy(StrEnum):
    """What happens to an occurrence due while the previous execution still runs."""

    SKIP = "skip"
    ALLOW = "allow"
    QUEUE_ONE = "queue_one"


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a failed execution: 1, 2, 4, 8, 16 s by default (the seed's schedule)."""

    max_retries: int = 5
    initial_delay: timedelta = timedelta(seconds=1)
    multiplier: float = 2.0
    max_delay: timedelta = timedelta(hours=1)
    jitter: bool = False


DEFAULT_TIMEOUT = timedelta(minutes=5)
DEFAULT_CATCHUP_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Task:
    """A registered task, as stored."""

    id: str
    name: str
    schedule: str
    handler: str
    enabled: bool
    metadata: dict[str, JSON]
    timezone: str
    created_at: datetime
    updated_at: datetime
    last_run: datetime | None = None
    next_run: datetime | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: timedelta = DEFAULT_TIMEOUT
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW
    critical: bool = False
    # Memory (MiB) the handler may allocate in its worker process; None: the server's default.
    memory_limit_mb: int | None = None
    owner: str | None = None  # the caller that registered the task; None when the service ran open
    # How long the task's executions are kept; None: the service-wide retention.
    history_retention: timedelta | None = None


@dataclass(frozen=True)
class Execution:
    """One attempt to run a task, as stored: the ledger row and the queue entry."""

    id: str
    task_id: str
    task_name: str
    trigger: Trigger
    scheduled_for: datetime
    attempt: int
    status: ExecutionStatus
    due_at: datetime
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    error_category: ErrorCategory | None = None
    traceback: str | None = None
    result: JSON = None
    duration_ms: int | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """How a handler run ended."""

    status: ExecutionStatus
    completed_at: datetime
    result: JSON = None
    error: str | None = None
    error_category: ErrorCategory | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    """An execution whose last retry failed, parked until someone redrives or discards it."""

    id: str
    execution_id: str
    task_id: str
    task_name: str
    scheduled_for: datetime
    attempts: int
    error: str | None
    error_category: ErrorCategory | None
    created_at: datetime


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``next_token`` is empty on the last page."""

    items: Sequence[T]
    next_token: str = ""


Lane = Literal["local", "remote"]
"""Where the executor runs a handler: ``local`` in a worker process (Python over data, with the memory
limit), ``remote`` as an asyncio task on the replica's event loop (the work is a network call)."""
