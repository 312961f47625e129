"""The pure figures the performance scripts print: summaries, memory trends, occurrence tallies."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from perf_stats import MemoryTrend, Summary, parse_vmrss_kib, ratio, slope_per_minute, tally

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


def test_a_summary_gives_the_nearest_rank_percentiles_and_the_maximum() -> None:
    summary = Summary.of([float(i) for i in range(1, 101)])
    assert summary == Summary(100, 51.0, 95.0, 99.0, 100.0)
    assert Summary.of([]) is None
    assert "p95      95.0  p99" in Summary(1, 0.001, 0.095, 0.099, 0.1).line()


def test_vmrss_is_read_from_a_proc_status_text() -> None:
    status = "Name:\tpython\nVmPeak:\t  200000 kB\nVmRSS:\t   51234 kB\nThreads:\t3\n"
    assert parse_vmrss_kib(status) == 51234
    assert parse_vmrss_kib("Name:\tzombie\nState:\tZ (zombie)\n") is None


@pytest.mark.parametrize(
    ("points", "slope"),
    [
        ([(0.0, 100.0), (60.0, 102.0), (120.0, 104.0)], 2.0),
        ([(0.0, 100.0), (30.0, 100.0), (60.0, 100.0)], 0.0),
        ([(0.0, 100.0)], 0.0),
        ([(5.0, 100.0), (5.0, 120.0)], 0.0),
    ],
)
def test_the_slope_is_in_units_per_minute(points: list[tuple[float, float]], slope: float) -> None:
    assert slope_per_minute(points) == pytest.approx(slope)


def test_memory_that_grows_then_stays_flat_levels_off() -> None:
    warming = [(float(t), 100.0 + t / 6) for t in range(0, 300, 10)]  # +10 MiB/min for five minutes
    flat = [(float(t), 150.0 + (t % 20) / 10) for t in range(300, 600, 10)]  # noise, no trend
    trend = MemoryTrend.of(warming + flat)
    assert trend is not None and trend.levels_off
    assert trend.first_half == pytest.approx(10.0) and abs(trend.last_half) < 0.5
    assert (trend.start_mib, trend.peak_mib) == (100.0, 151.0)


def test_memory_that_keeps_growing_does_not_level_off() -> None:
    leaking = [(float(t), 100.0 + t / 20) for t in range(0, 600, 10)]  # +3 MiB/min throughout
    trend = MemoryTrend.of(leaking)
    assert trend is not None and not trend.levels_off and trend.last_half == pytest.approx(3.0)
    assert MemoryTrend.of(leaking[:3]) is None


def test_a_tally_counts_fired_doubled_missed_and_unexpected_occurrences() -> None:
    instants = [T0, T0 + timedelta(minutes=1)]
    rows = [("a", T0), ("a", T0), ("a", instants[1]), ("b", T0), ("b", T0 + timedelta(minutes=5))]
    assert tally(rows, ["a", "b"], instants).__dict__ == {
        "expected": 4,
        "fired": 4,
        "doubled": 1,
        "missed": 1,
        "outside": 1,
    }


def test_a_ratio_says_when_it_cannot_be_computed() -> None:
    assert (ratio(3.0, 2.0), ratio(1.0, 0.0)) == ("1.50", "n/a")


def test_a_comparison_run_counts_lateness_doubles_and_losses_from_the_receipts() -> None:
    from compare import Run

    at = T0.timestamp()
    scheduled = T0.isoformat()
    run = Run(
        3,
        [
            (at + 0.5, scheduled, "ours-1", "t1:x"),
            (at + 1.5, scheduled, "ours-2", "t2:x"),
            (at + 2.0, scheduled, "ours-2", "t2:x"),  # the same occurrence twice
        ],
    )
    assert run.lateness == [0.5, 1.5, 2.0]
    assert (run.doubled, run.lost) == (1, 1)


def test_the_cpu_of_a_process_tree_is_read_from_proc() -> None:
    import os
    import subprocess

    from compare import tree_cpu_s

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nprint(1, flush=True)"
    child = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline()  # it has burnt 0.3 s and is still alive
    try:
        assert tree_cpu_s(os.getpid()) >= 0.25
    finally:
        child.wait()
