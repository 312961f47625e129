"""History queries: filters over executions, and the cursor of a page (newest first)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schedule_grpc.domain import tokens
from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import ExecutionStatus


@dataclass(frozen=True)
class HistoryFilter:
    """Which executions to list; empty collections and None bounds mean "any".

    The time range applies to the execution's creation (``created_at``): ``start`` inclusive,
    ``end`` exclusive.
    """

    task_names: Collection[str] = field(default_factory=frozenset)
    statuses: Collection[ExecutionStatus] = field(default_factory=frozenset)
    start: datetime | None = None
    end: datetime | None = None

    def validate(self) -> HistoryFilter:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise InvalidArgument("end_time", "must be after start_time")
        return self

    def fingerprint(self) -> str:
        """Identifies the filter, so that a page token is only accepted with the filter it was made for."""
        parts = [
            ",".join(sorted(self.task_names)),
            ",".join(sorted(s.value for s in self.statuses)),
            self.start.isoformat() if self.start else "",
            self.end.isoformat() if self.end else "",
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, order=True)
class HistoryKey:
    """Where a page ended: executions are ordered by (created_at, id), newest first."""

    created_at: datetime
    id: str


def encode_key(listing: str, key: HistoryKey) -> str:
    return tokens.encode(listing, f"{key.created_at.isoformat()}|{key.id}")


def decode_key(token: str, listing: str) -> HistoryKey | None:
    raw = tokens.decode(token, listing)
    if raw is None:
        return None
    created_at, _, execution_id = raw.partition("|")
    try:
        instant = datetime.fromisoformat(created_at)
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError("naive")
        return HistoryKey(instant.astimezone(UTC), execution_id)
    except (ValueError, OverflowError):
        raise InvalidArgument("page_token", "is not a token returned by this listing") from None
