"""The audit trail: who changed which task, when, and what it looked like before and after.

Use cases call ``AuditTrail.record`` after a change has been committed; admins read the trail with
``AuditTrail.list``. Entries are about a task by name and id and outlive the task. The records themselves
(``AuditAction``, ``AuditEntry``, ``AuditFilter``) are in ``schedule_grpc.domain.audit``, so that the store
that keeps them does not depend on the use cases.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from schedule_grpc.domain import caller, validation
from schedule_grpc.domain.audit import AuditAction, AuditEntry, AuditFilter
from schedule_grpc.domain.caller import Caller
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.history import HistoryKey, decode_key, encode_key
from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import JSON, Page, Task
from schedule_grpc.security import secrets
from schedule_grpc.usecases.ports import AuditRecords

log = logging.getLogger(__name__)

DEFAULT_AUDIT_PAGE = 100


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
    """Records changes made by a caller, and lists them."""

    def __init__(self, store: AuditRecords, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def record(
        self,
        actor: Caller | None,
        action: AuditAction,
        *,
        before: Task | None = None,
        after: Task | None = None,
        subject_id: str | None = None,
        task_name: str = "",
        task_id: str = "",
    ) -> AuditEntry:
        """Stores one entry about ``after`` (or ``before``) made by ``actor``; logs it too."""
        about = after or before
        entry = AuditEntry(
            id=new_id("audit"),
            action=action,
            task_name=about.name if about else task_name,
            task_id=about.id if about else task_id,
            actor=caller.owner_name(actor),
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
