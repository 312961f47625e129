"""The takeover rule: a follower replaces a leader only after seeing its lease silent past term + grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schedule_grpc.scheduling.lease import LeaseWatch
from schedule_grpc.store.leader import Lease

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _lease(epoch: int = 7, renewals: int = 0, term_s: float = 2.0) -> Lease:
    renewed = T0 + timedelta(seconds=renewals)
    return Lease(epoch, "r1", 4242, renewals, renewed, renewed + timedelta(seconds=term_s))


@pytest.mark.parametrize(
    ("silent_s", "stale"),
    [
        (0.0, False),
        (2.0, False),  # within the term
        (4.9, False),  # expired, but within the grace
        (5.0, False),  # exactly term + grace
        (5.1, True),
        (150.0, True),
    ],
)
def test_a_lease_is_stale_only_when_silent_longer_than_its_term_plus_the_grace(silent_s: float, stale: bool) -> None:
    watch = LeaseWatch(grace_s=3.0)
    assert watch.observe(_lease(), 1000.0) is None  # the first sight only starts the count
    silence = watch.observe(_lease(), 1000.0 + silent_s)
    assert (silence is not None) is stale


def test_every_renewal_restarts_the_count() -> None:
    watch = LeaseWatch(grace_s=3.0)
    for i in range(10):  # renewed every 4 s: never 5 s of silence
        assert watch.observe(_lease(renewals=i), 1000.0 + 4 * i) is None
        assert watch.observe(_lease(renewals=i), 1000.0 + 4 * i + 3.9) is None


def test_a_new_epoch_restarts_the_count_even_with_the_same_renewal_count() -> None:
    watch = LeaseWatch(grace_s=3.0)
    watch.observe(_lease(epoch=7), 1000.0)
    assert watch.observe(_lease(epoch=8), 1010.0) is None
    assert watch.observe(_lease(epoch=8), 1014.0) is None


def test_the_term_is_the_leaders_own_and_the_reason_names_the_silent_leader() -> None:
    watch = LeaseWatch(grace_s=1.0)
    watch.observe(_lease(term_s=10.0), 0.0)
    assert watch.observe(_lease(term_s=10.0), 10.5) is None  # a leader renewing every 5 s is not silent at 10.5 s
    silence = watch.observe(_lease(term_s=10.0), 11.5)
    assert silence is not None
    reason = silence.reason()
    assert "epoch 7" in reason and "replica r1" in reason and "backend 4242" in reason and "11.5s" in reason


def test_no_lease_yet_means_no_takeover_and_a_fresh_count() -> None:
    watch = LeaseWatch(grace_s=3.0)
    watch.observe(_lease(), 0.0)
    assert watch.observe(None, 100.0) is None
    assert watch.observe(_lease(), 200.0) is None  # counting starts again from here
    assert watch.observe(_lease(), 204.0) is None
