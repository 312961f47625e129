"""The follower's side of the leader's lease: when is a leader silent enough to be replaced, and how.

The leader's firing loop renews the lease every ``interval_s`` for a term of two intervals. A
follower replaces the leader once it has seen the lease unchanged (same epoch, same renewal count)
for longer than the lease's term plus a grace. The silence is measured on the follower's own
monotonic clock, from the moment it first saw that renewal, rather than by comparing the leader's
recorded expiry with the follower's wall clock: clock skew between hosts cannot cause a takeover,
and a follower that was itself paused re-reads a lease that has moved on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from schedule_grpc.store.leader import LeaderLock, Lease, LeaseStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Silence:
    """A lease this follower saw go unrenewed for ``silent_s`` seconds, past its term and the grace."""

    lease: Lease
    silent_s: float
    grace_s: float

    @property
    def term_s(self) -> float:
        return (self.lease.expires_at - self.lease.renewed_at).total_seconds()

    def reason(self) -> str:
        lease = self.lease
        return (
            f"took over from epoch {lease.epoch} (replica {lease.replica_id}, backend {lease.backend_pid}):"
            f" its lease was not renewed for {self.silent_s:.1f}s (term {self.term_s:g}s, grace {self.grace_s:g}s;"
            f" it expired at {lease.expires_at.isoformat()})"
        )


class LeaseWatch:
    """One follower's observation of the current lease (pure: time comes in as an argument)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._key: tuple[int, int] | None = None
        self._since = 0.0

    def observe(self, lease: Lease | None, now: float) -> Silence | None:
        """The silence when ``lease`` has not moved for longer than its term plus the grace, else None."""
        if lease is None:
            self._key = None
            return None
        key = (lease.epoch, lease.renewals)
        if key != self._key:
            self._key, self._since = key, now
            return None
        silence = Silence(lease, now - self._since, self.grace_s)
        return silence if silence.silent_s > silence.term_s + self.grace_s else None

    def reset(self) -> None:
        """Starts observing afresh (after a takeover attempt)."""
        self._key = None

    @property
    def watching(self) -> bool:
        return self._key is not None


class Campaign:
    """One replica's bid for leadership: the lock when it is free, or the place of a silent leader.

    A held lock is taken over only when ``watch`` finds the lease silent past its term and the grace,
    and the backend holding the lock is the one that lease names (not a newer leader that has yet to
    write its own lease). The stale leader's lock connection is then terminated, which releases the
    lock within milliseconds.
    """

    def __init__(
        self,
        lock: LeaderLock,
        lease: LeaseStore,
        watch: LeaseWatch,
        monotonic: Callable[[], float],
        *,
        retry_s: float,
        stop: threading.Event,
    ) -> None:
        self._lock = lock
        self._lease = lease
        self._watch = watch
        self._monotonic = monotonic
        self._retry_s = retry_s
        self._stop = stop

    @property
    def watching(self) -> bool:
        """Whether a lease renewal has been seen (the silence is counted from it)."""
        return self._watch.watching

    def attempt(self) -> str | None:
        """Why this replica may now lead (it holds the lock), or None. Raises on a database error."""
        if self._lock.try_acquire():
            return "the leader lock was free"
        silence = self._watch.observe(self._lease.read(), self._monotonic())
        if silence is None:
            return None
        self._watch.reset()
        holder = self._lock.holder()
        if holder is None or holder != silence.lease.backend_pid:
            return None
        return self._take_over(silence, holder)

    def _take_over(self, silence: Silence, holder: int) -> str | None:
        log.warning(
            "the leader's lease was not renewed: terminating its lock connection",
            extra={
                "epoch": silence.lease.epoch,
                "leader": silence.lease.replica_id,
                "backend_pid": holder,
                "silent_s": round(silence.silent_s, 1),
            },
        )
        self._lock.terminate(holder)
        deadline = time.monotonic() + max(2.0, 4 * self._retry_s)
        while not self._stop.is_set():  # the backend exits within milliseconds, releasing the lock
            if self._lock.try_acquire():
                return silence.reason()
            if time.monotonic() >= deadline:
                return None
            self._stop.wait(0.02)
        return None
