"""Per-caller token buckets: a misbehaving caller is slowed down, not the service."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """``per_s`` tokens flow in each second, up to ``burst``; a call takes one."""

    per_s: float
    burst: int


class RateLimiter:
    """Token buckets keyed by (caller, class of call). ``now`` is seconds on any steady scale."""

    def __init__(self, rates: dict[str, Rate], now: Callable[[], float]) -> None:
        self._rates = rates
        self._now = now
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, caller: str, kind: str) -> float:
        """Takes a token; 0.0 when the call may go ahead, otherwise the seconds until one is there."""
        rate = self._rates[kind]
        now = self._now()
        with self._lock:
            tokens, at = self._buckets.get((caller, kind), (float(rate.burst), now))
            tokens = min(float(rate.burst), tokens + max(0.0, now - at) * rate.per_s)
            if tokens >= 1.0:
                self._buckets[(caller, kind)] = (tokens - 1.0, now)
                return 0.0
            self._buckets[(caller, kind)] = (tokens, now)
            return (1.0 - tokens) / rate.per_s
