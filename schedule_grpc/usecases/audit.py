"""The audit trail: who changed which task, when, and what it looked like before and after.

Use cases call ``AuditTrail.record`` after a change has been committed; admins read the trail with
``AuditTrail.list``. Entries are about a task by name and id and outlive the task.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from schedule_grpc.domain import caller, validation
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.history import HistoryKey, decode_key, encode_key
from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import JSON, Page, Task
from schedule_grpc.security import secrets

log = logging.getLogger(__name__)

DEFAULT_AUDIT_PAGE = 100


class AuditAction(StrEnum):
    """What an entry records."""

    REGISTERED = "registered"
    UPDATED = "updated"
    ENABLED = "enabled"
    DISABLED = "disabled"
    UNREGISTERED = "unregistered"
    RUN_NOW = "run_now"
    DEAD_LETTER_REDRIVEN = "dead_letter_redriven"
    DEAD_LETTER_DISCARDED = "dead_letter_discarded"


@dataclass(frozen=True)
class AuditEntry:
    """One recorded change. ``actor`` is None when the service ran without credentials."""

    id: str
    action: AuditAction
    task_name: str
    task_id: str
    actor: str | None
    occurred_at: datetime
    before: dict[str, JSON] | None = None
    after: dict[str, JSON] | None = None
    subject_id: str | None = None


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to list; empty values mean "any". ``start`` inclusive, ``end`` exclusive."""

    task_name: str = ""
    actor: str = ""
    actions: Collection[AuditAction] = field(default_factory=frozenset)
    start: datetime | None = None
    end: datetime | None = None

    def validate(self) -> AuditFilter:
        if self.task_name:
            validation.name(self.task_name, "task_name")
        if len(self.actor) > 128:
            raise InvalidArgument("actor", "is at most 128 characters")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise InvalidArgument("end_time", "must be after start_time")
        return self

    def fingerprint(self) -> str:
        parts = [
            self.task_name,
            self.actor,
            ",".join(sorted(a.value for a in self.actions)),
            self.start.isoformat() if self.start else "",
            self.end.isoformat() if self.end else "",
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class AuditStore(Protocol):
    """Where entries are kept (store/audit.py)."""

    def insert(self, entry: AuditEntry) -> None: ...

    def page(self, selector: AuditFilter, *, limit: int, after: HistoryKey | None) -> Sequence[AuditEntry]: ...


def _seconds(value: timedelta | None) -> str | None:
    return None if value is None else f"{value.total_seconds():g}s"


def snapshot(task: Task) -> dict[str, JSON]:
    """The task's definition as the JSON API shows it (camelCase, durations as "300s")."""
    policy = task.retry_policy
    return {
        "id": task.id,
        "name": task.name,
        "schedule": task.schedule,
        "timezone": task.timezone,
        "handler": task.handler,
        "enabled": task.enabled,
        "metadata": secrets.redact(task.metadata),  # write-only: the trail keeps that a secret was set, not its value
        "retryPolicy": {
            "maxRetries": policy.max_retries,
            "initialDelay": _seconds(policy.initial_delay),
            "multiplier": policy.multiplier,
            "maxDelay": _seconds(policy.max_delay),
            "jitter": policy.jitter,
        },
        "timeout": _seconds(task.timeout),
        "overlapPolicy": task.overlap_policy.value,
        "catchupWindow": _seconds(task.catchup_window),
        "critical": task.critical,
        "memoryLimitMb": task.memory_limit_mb,
        "owner": task.owner,
        "historyRetention": _seconds(task.history_retention),
    }


class AuditTrail:
    """Records changes as the current caller, and lists them."""

    def __init__(self, store: AuditStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def record(
        self,
        action: AuditAction,
        *,
        before: Task | None = None,
        after: Task | None = None,
        subject_id: str | None = None,
        task_name: str = "",
        task_id: str = "",
    ) -> AuditEntry:
        """Stores one entry about ``after`` (or ``before``) made by the current caller; logs it too."""
        about = after or before
        entry = AuditEntry(
            id=new_id("audit"),
            action=action,
            task_name=about.name if about else task_name,
            task_id=about.id if about else task_id,
            actor=caller.owner_name(),
            occurred_at=self._clock.now(),
            before=snapshot(before) if before else None,
            after=snapshot(after) if after else None,
            subject_id=subject_id,
        )
        self._store.insert(entry)
        log.info(
            "task %s %s",
            entry.task_name,
            action.value.replace("_", " "),
            extra={"audit": action.value, "task_name": entry.task_name, "actor": entry.actor or ""},
        )
        return entry

    def list(self, selector: AuditFilter, *, page_size: int, page_token: str) -> Page[AuditEntry]:
        size = validation.limit(page_size, "page_size", default=DEFAULT_AUDIT_PAGE)
        selector = selector.validate()
        listing = f"audit:{selector.fingerprint()}"
        items = self._store.page(selector, limit=size + 1, after=decode_key(page_token, listing))
        more = len(items) > size
        items = items[:size]
        last = items[-1] if items else None
        token = encode_key(listing, HistoryKey(last.occurred_at, last.id)) if more and last else ""
        return Page(items, token)
