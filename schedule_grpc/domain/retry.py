"""What happens after a failed attempt: a retry after a delay, or the dead-letter queue. Pure functions."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta

import backoff

from schedule_grpc.domain.models import RetryPolicy, Trigger


def next_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    jitter: Callable[[float], float] = backoff.full_jitter,
) -> timedelta | None:
    """Delay before attempt ``attempt + 1`` after attempt ``attempt`` failed; None when retries are spent.

    Attempt n waits ``min(initial_delay * multiplier^(n-1), max_delay)``, spread over [0, delay] when the
    policy has jitter: 1, 2, 4, 8, 16 s with the defaults.
    """
    if attempt < 1 or attempt > policy.max_retries:
        return None
    delays = backoff.expo(
        base=policy.multiplier,
        factor=policy.initial_delay.total_seconds(),
        max_value=policy.max_delay.total_seconds(),
    )
    next(delays)  # backoff's generators are primed with a first next()
    seconds = next(itertools.islice(delays, attempt - 1, None))
    if policy.jitter:
        seconds = jitter(seconds)
    return timedelta(seconds=seconds)


def retries(trigger: Trigger) -> bool:
    """Whether a failure of an execution created by ``trigger`` is retried and may be dead-lettered.

    A manual run is one attempt: its caller sees the outcome and decides what to do next.
    """
    return trigger is not Trigger.MANUAL
