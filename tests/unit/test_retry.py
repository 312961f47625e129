"""The retry decision, by table."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schedule_grpc.domain.models import RetryPolicy, Trigger
from schedule_grpc.domain.retry import next_delay, retries

S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("policy", "attempt", "expected"),
    [
        (RetryPolicy(), 1, 1 * S),
        (RetryPolicy(), 2, 2 * S),
        (RetryPolicy(), 3, 4 * S),
        (RetryPolicy(), 4, 8 * S),
        (RetryPolicy(), 5, 16 * S),
        (RetryPolicy(), 6, None),
        (RetryPolicy(), 0, None),
        (RetryPolicy(max_retries=0), 1, None),
        (RetryPolicy(max_retries=10, max_delay=5 * S), 4, 5 * S),
        (RetryPolicy(initial_delay=timedelta(milliseconds=250), multiplier=3), 3, timedelta(seconds=2.25)),
        (RetryPolicy(multiplier=1), 5, 1 * S),
    ],
)
def test_next_delay(policy: RetryPolicy, attempt: int, expected: timedelta | None) -> None:
    assert next_delay(policy, attempt) == expected


def test_jitter_spreads_the_delay_over_zero_to_the_delay() -> None:
    policy = RetryPolicy(jitter=True)
    assert next_delay(policy, 3, jitter=lambda d: d / 2) == 2 * S
    assert all(timedelta(0) <= next_delay(policy, 3) <= 4 * S for _ in range(50))  # type: ignore[operator]


def test_manual_runs_are_not_retried() -> None:
    assert not retries(Trigger.MANUAL) and retries(Trigger.SCHEDULE) and retries(Trigger.RETRY)
