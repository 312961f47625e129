"""The audit trail's records: what was done to which task, by whom, and how entries are selected."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from schedule_grpc.domain import validation
from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON


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
