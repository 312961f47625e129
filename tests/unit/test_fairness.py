"""Which due executions start: lane capacity, each owner's share, manual runs in the headroom. By table."""

from __future__ import annotations

from collections import Counter

import pytest

from schedule_grpc.domain.fairness import Candidate, LaneLimits, Load, admit, owner_cap, room
from schedule_grpc.handlers.base import Lane

LIMITS: dict[Lane, LaneLimits] = {"local": LaneLimits(4, 2), "remote": LaneLimits(8, 2)}


def lane(handler: str) -> Lane:
    return "remote" if handler == "http" else "local"


def c(i: int, owner: str | None, handler: str = "http", *, manual: bool = False) -> Candidate:
    return Candidate(f"e{i}", f"t{i}", handler, owner, manual)


def ids(chosen: list[Candidate]) -> list[str]:
    return [x.id for x in chosen]


@pytest.mark.parametrize(
    ("name", "candidates", "loads", "expected"),
    [
        ("an owner gets half the remote lane", [c(i, "a") for i in range(10)], {}, [f"e{i}" for i in range(4)]),
        (
            "a second owner still gets in",
            [*[c(i, "a") for i in range(6)], c(9, "b")],
            {},
            ["e0", "e1", "e2", "e3", "e9"],
        ),
        (
            "an owner at its share is skipped, the others start",
            [c(0, "a"), c(1, "b")],
            {"remote": Load(4, Counter({"a": 4}))},
            ["e1"],
        ),
        ("a full lane starts nothing scheduled", [c(0, "b")], {"remote": Load(8, Counter({"a": 4, "c": 4}))}, []),
        (
            "a manual run uses the headroom of a full lane",
            [c(0, "b", manual=True), c(1, "b", manual=True), c(2, "b", manual=True)],
            {"remote": Load(8, Counter({"a": 4, "c": 4}))},
            ["e0", "e1"],
        ),
        (
            "lanes are counted apart",
            [c(0, "a", "sleep"), c(1, "a", "sleep"), c(2, "a", "sleep"), c(3, "a")],
            {},
            ["e0", "e1", "e3"],
        ),
        (
            "tasks without an owner are held to no share",
            [c(i, None) for i in range(9)],
            {},
            [f"e{i}" for i in range(8)],
        ),
    ],
)
def test_admit(name: str, candidates: list[Candidate], loads: dict[Lane, Load], expected: list[str]) -> None:
    assert ids(admit(candidates, lane_of=lane, limits=LIMITS, loads=loads, share=0.5)) == expected


def test_admit_leaves_the_loads_as_they_were() -> None:
    loads: dict[Lane, Load] = {"remote": Load(1, Counter({"a": 1}))}
    admit([c(0, "b")], lane_of=lane, limits=LIMITS, loads=loads, share=0.5)
    assert loads["remote"].running == 1 and loads["remote"].by_owner == Counter({"a": 1})


@pytest.mark.parametrize(("capacity", "share", "expected"), [(512, 0.5, 256), (4, 0.5, 2), (1, 0.5, 1), (3, 0.1, 1)])
def test_owner_cap(capacity: int, share: float, expected: int) -> None:
    assert owner_cap(capacity, share) == expected


def test_room_counts_the_headroom() -> None:
    assert room(LIMITS, {"local": Load(4), "remote": Load(3)}) == 2 + 7
