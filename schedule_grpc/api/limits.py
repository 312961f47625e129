"""Per-caller token buckets: a misbehaving caller is slowed down, not the service.

The table is bounded: a bucket that has filled up again is the same as no bucket and is dropped, and
past ``max_keys`` the least recently used bucket goes first. So memory stays flat however many distinct
callers (token names, certificate names, peer addresses) appear.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_KEYS = 10_000


@dataclass(frozen=True)
class Rate:
    """``per_s`` tokens flow in each second, up to ``burst``; a call takes one."""

    per_s: float
    burst: int


class RateLimiter:
    """Token buckets keyed by (caller, class of call). ``now`` is seconds on any steady scale."""

    def __init__(self, rates: dict[str, Rate], now: Callable[[], float], *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._rates = rates
        self._now = now
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # key -> (tokens, at); oldest use first
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def take(self, caller: str, kind: str) -> float:
        """Takes a token; 0.0 when the call may go ahead, otherwise the seconds until one is there."""
        return self.take_many(caller, kind, 1.0)

    def take_many(self, caller: str, kind: str, cost: float) -> float:
        """Takes ``cost`` tokens (or none); 0.0 when they were there, else the seconds until they are."""
        rate = self._rates[kind]
        now = self._now()
        key = (caller, kind)
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(rate.burst), now))
            tokens = min(float(rate.burst), tokens + max(0.0, now - at) * rate.per_s)
            wait = 0.0 if tokens >= cost else (cost - tokens) / rate.per_s
            if wait == 0.0:
                tokens -= cost
            if tokens < rate.burst:  # a full bucket is the same as none: not kept
                self._buckets[key] = (tokens, now)
                self._evict(now)
            return wait

    def peek(self, caller: str, kind: str) -> float:
        """The seconds until one token is there for ``caller`` (0.0: now), taking nothing."""
        rate = self._rates[kind]
        now = self._now()
        with self._lock:
            tokens, at = self._buckets.get((caller, kind), (float(rate.burst), now))
        tokens = min(float(rate.burst), tokens + max(0.0, now - at) * rate.per_s)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate.per_s

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        # the oldest few: dropped when refilled by now (cheap, amortised), or when over the bound
        for _ in range(2):
            if not buckets:
                return
            key, (tokens, at) = next(iter(buckets.items()))
            rate = self._rates[key[1]]
            if tokens + max(0.0, now - at) * rate.per_s >= rate.burst or len(buckets) > self._max_keys:
                buckets.popitem(last=False)
        while len(buckets) > self._max_keys:
            buckets.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)
