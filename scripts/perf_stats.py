"""Pure figures of the load, scale and comparison scripts: summaries, memory trends, occurrence tallies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from drill_common import percentiles


@dataclass(frozen=True)
class Summary:
    """Count and p50 / p95 / p99 / max of some samples (in their unit)."""

    n: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary | None:
        if not samples:
            return None
        return cls(len(samples), *percentiles(list(samples)))

    def line(self, scale: float = 1000.0, unit: str = "ms") -> str:
        return (
            f"n={self.n:<6} p50 {self.p50 * scale:9.1f}  p95 {self.p95 * scale:9.1f}  "
            f"p99 {self.p99 * scale:9.1f}  max {self.max * scale:9.1f} {unit}"
        )


def parse_vmrss_kib(status: str) -> int | None:
    """The VmRSS of a /proc/<pid>/status text, in KiB (None for a zombie, which has none)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per minute (0 for fewer than 2 points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return 60 * sum((x - mx) * (y - my) for x, y in points) / sxx


@dataclass(frozen=True)
class MemoryTrend:
    """How a process's RSS moved: slope of the first and of the last half of the samples, in MiB/min."""

    first_half: float
    last_half: float
    start_mib: float
    end_mib: float
    peak_mib: float
    levels_off: bool

    @classmethod
    def of(cls, points: Sequence[tuple[float, float]], tolerance_mib_per_min: float = 1.0) -> MemoryTrend | None:
        """Levels off when the last half's slope is at most ``tolerance_mib_per_min``."""
        if len(points) < 4:
            return None
        half = len(points) // 2
        last = slope_per_minute(points[half:])
        return cls(
            first_half=slope_per_minute(points[:half]),
            last_half=last,
            start_mib=points[0][1],
            end_mib=points[-1][1],
            peak_mib=max(y for _, y in points),
            levels_off=last <= tolerance_mib_per_min,
        )


@dataclass(frozen=True)
class Tally:
    """Occurrences expected against the execution rows that recorded them."""

    expected: int
    fired: int  # rows of expected occurrences
    doubled: int  # rows beyond the first of an occurrence
    missed: int  # expected occurrences with no row
    outside: int  # rows of occurrences that were not expected


def tally(rows: Iterable[tuple[str, datetime]], task_ids: Iterable[str], instants: Iterable[datetime]) -> Tally:
    """Counts (task id, scheduled instant) rows against every task at every instant."""
    expected = {(t, i) for t in task_ids for i in instants}
    counts = Counter(rows)
    fired = sum(n for key, n in counts.items() if key in expected)
    doubled = sum(n - 1 for key, n in counts.items() if key in expected and n > 1)
    missed = sum(1 for key in expected if key not in counts)
    outside = sum(n for key, n in counts.items() if key not in expected)
    return Tally(len(expected), fired, doubled, missed, outside)


def ratio(a: float, b: float) -> str:
    """a / b to two decimals, or n/a."""
    return f"{a / b:.2f}" if b > 0 else "n/a"
