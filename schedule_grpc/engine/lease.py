"""The follower's side of the leader's lease: when is a leader silent enough to be replaced?

The leader's firing loop renews the lease every ``interval_s`` for a term of two intervals. A
follower replaces the leader once it has seen the lease unchanged (same epoch, same renewal count)
for longer than the lease's term plus a grace. The silence is measured on the follower's own
monotonic clock, from the moment it first saw that renewal, rather than by comparing the leader's
recorded expiry with the follower's wall clock: clock skew between hosts cannot cause a takeover,
and a follower that was itself paused re-reads a lease that has moved on.
"""

from __future__ import annotations

from dataclasses import dataclass

from schedule_grpc.store.leader import Lease


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
        """Starts observing afresh (after a takeover attempt, or on leading)."""
        self._key = None
