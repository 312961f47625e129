"""Per-caller tables stay bounded: 100,000 distinct callers cost no more memory than the bound allows."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from schedule_grpc.api.capacity import LongCalls
from schedule_grpc.api.guard import peer_address
from schedule_grpc.api.limits import Rate, RateLimiter
from schedule_grpc.domain.errors import ResourceExhausted


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _used(limiter: RateLimiter, callers: range, ticks: Ticks) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in callers:
        ticks.now += 0.0001
        limiter.take(f"caller-{i}", "default")
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used


def test_100000_distinct_callers_keep_the_table_and_its_memory_bounded() -> None:
    ticks = Ticks()
    limiter = RateLimiter({"default": Rate(per_s=1.0, burst=5)}, now=ticks, max_keys=1000)
    first = _used(limiter, range(0, 1000), ticks)
    assert len(limiter) == 1000
    more = _used(limiter, range(1000, 101_000), ticks)  # 100x the callers
    assert len(limiter) == 1000
    assert more < max(first, 64 * 1024), (first, more)  # flat: the table does not grow with the callers


def test_eviction_keeps_a_busy_caller_limited() -> None:
    ticks = Ticks()
    limiter = RateLimiter({"default": Rate(per_s=1.0, burst=2)}, now=ticks, max_keys=100)
    assert limiter.take("busy", "default") == 0 and limiter.take("busy", "default") == 0
    for i in range(50):  # other callers come and go; the busy one is recent enough to stay
        limiter.take(f"other-{i}", "default")
    assert limiter.take("busy", "default") > 0
    ticks.now += 10
    assert limiter.take("busy", "default") == 0


def test_full_buckets_are_dropped() -> None:
    ticks = Ticks()
    limiter = RateLimiter({"default": Rate(per_s=10.0, burst=2)}, now=ticks)
    for i in range(100):
        limiter.take(f"c{i}", "default")
    ticks.now += 1  # every bucket has refilled: the same as none
    for i in range(100, 200):
        limiter.take(f"c{i}", "default")
    assert len(limiter) <= 101


def test_peer_addresses_drop_the_port_and_trust_a_forwarded_client_only_from_loopback() -> None:
    assert peer_address("ipv4:10.0.0.7:51234", {}) == "10.0.0.7"
    assert peer_address("ipv6:[2001:db8::1]:443", {}) == "2001:db8::1"
    assert peer_address("ipv4:127.0.0.1:40000", {"x-schedule-client-address": "192.0.2.9"}) == "192.0.2.9"
    assert peer_address("ipv4:10.0.0.7:51234", {"x-schedule-client-address": "192.0.2.9"}) == "10.0.0.7"


def test_long_calls_are_bounded_per_caller_and_per_replica_and_forget_idle_callers() -> None:
    calls = LongCalls(per_replica=3, per_caller=2)
    with calls.hold("10.0.0.1"), calls.hold("10.0.0.1"):
        with pytest.raises(ResourceExhausted, match="already holds 2"), calls.hold("10.0.0.1"):
            pass
        with calls.hold("10.0.0.2"):
            with pytest.raises(ResourceExhausted, match="this replica serves 3"), calls.hold("10.0.0.3"):
                pass
            assert calls.held == 3
    assert calls.held == 0 and not calls._by_caller  # an idle caller costs nothing
