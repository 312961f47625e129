"""Which due executions a replica starts now: lane capacity, each owner's share, manual runs first. Pure.

Each lane (``local`` worker processes, ``remote`` asyncio tasks) has a capacity. One task owner may
hold at most ``share`` of a lane's capacity (at least one slot), so while one caller's webhooks hang
until their timeout the rest of the lane stays free for the others. A manual run (RunTaskNow: a caller
is waiting) may also use a small ``headroom`` above the capacity and is not held to the owner's share,
so it never queues behind anyone's slow work; RunTaskNow's own rate limit bounds how many there are.
Tasks without an owner (registered while the service ran open, with no callers to tell apart) are not
held to a share.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from schedule_grpc.domain.models import Lane


@dataclass(frozen=True)
class Candidate:
    """A due pending execution, as the claim sees it."""

    id: str
    task_id: str
    handler: str
    owner: str | None
    manual: bool


@dataclass(frozen=True)
class LaneLimits:
    """A lane's capacity and the extra room manual runs may use."""

    capacity: int
    headroom: int = 0


@dataclass
class Load:
    """What runs in one lane of this replica now: the total and per task owner."""

    running: int = 0
    by_owner: Counter[str | None] = field(default_factory=Counter)

    def add(self, owner: str | None) -> None:
        self.running += 1
        self.by_owner[owner] += 1


def owner_cap(capacity: int, share: float) -> int:
    """The most executions one owner may run at once in a lane of ``capacity``."""
    return max(1, math.floor(capacity * share))


def admit(
    candidates: Iterable[Candidate],
    *,
    lane_of: Callable[[str], Lane],
    limits: Mapping[Lane, LaneLimits],
    loads: Mapping[Lane, Load],
    share: float,
) -> list[Candidate]:
    """The candidates to start, in the order given (the claim orders manual runs first, then round-robin
    over owners by due time). ``loads`` is what runs now; it is not changed."""
    taken = {lane: Load(load.running, Counter(load.by_owner)) for lane, load in loads.items()}
    chosen: list[Candidate] = []
    for candidate in candidates:
        lane = lane_of(candidate.handler)
        limit = limits[lane]
        load = taken.setdefault(lane, Load())
        if candidate.manual:
            fits = load.running < limit.capacity + limit.headroom
        else:
            within_share = candidate.owner is None or load.by_owner[candidate.owner] < owner_cap(limit.capacity, share)
            fits = load.running < limit.capacity and within_share
        if fits:
            load.add(candidate.owner)
            chosen.append(candidate)
    return chosen


def room(limits: Mapping[Lane, LaneLimits], loads: Mapping[Lane, Load]) -> int:
    """How many more executions (manual ones included) the lanes could start now."""
    return sum(
        max(limit.capacity + limit.headroom - (loads[lane].running if lane in loads else 0), 0)
        for lane, limit in limits.items()
    )
