"""The leader's lease on Postgres: a hung leader is replaced, and a leader that wakes up fires nothing.

The hang is simulated, not waited for: the leader's firing loop is blocked on an event inside its
lease renewal, and the replicas' monotonic clock (which times the lease's silence) is moved by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from schedule_grpc.domain.firing import Occurrence
from schedule_grpc.store import db as dbm
from schedule_grpc.store.leader import LeadershipLost, LeaseStore, LocalLeaderLock, lease_for
from tests.integration.engine_support import FUTURE, Replica, make_replica, register, rows
from tests.support import FakeClock, eventually

pytestmark = pytest.mark.postgres


class FakeMonotonic:
    """A monotonic clock the test moves by hand (the lease's silence is timed with it)."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class Hang:
    """Blocks a replica's lease renewals, so its firing loop hangs in the next one until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, replica: Replica) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        store: LeaseStore = replica.engine._lease
        renew = store.renew

        def hung(epoch: int, now: datetime, expires_at: datetime) -> bool:
            self.entered.set()
            self.released.wait(60)
            return renew(epoch, now, expires_at)

        monkeypatch.setattr(store, "renew", hung)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def db(postgres_url: str) -> Iterator[Engine]:
    engine = dbm.make_engine(postgres_url)
    yield engine
    engine.dispose()


def _epochs(db: Engine) -> list[Any]:
    with db.connect() as conn:
        query = "SELECT epoch, replica_id, backend_pid, reason FROM leader_epochs ORDER BY epoch"
        return list(conn.execute(text(query)))


def _healthy(replica: Replica) -> bool:
    try:
        replica.engine.check()
    except RuntimeError:
        return False
    return True


def test_a_hung_leader_is_replaced_and_fires_nothing_when_it_wakes(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, monotonic = FakeClock(FUTURE), FakeMonotonic()
    replicas = [make_replica(db, clock, f"r{i}", monotonic=monotonic) for i in range(2)]
    for r in replicas:
        r.engine.start()
    hang: Hang | None = None
    try:
        assert eventually(lambda: sum(r.engine.is_leader for r in replicas) == 1)
        (old,) = [r for r in replicas if r.engine.is_leader]
        (new,) = [r for r in replicas if r is not old]
        assert old.engine.wait_leader(5)
        task = register(old, "every-five", "*/5 * * * *")
        assert eventually(lambda: old.engine._scheduler is not None and old.engine._scheduler.entry(task.id))

        hang = Hang(monkeypatch, old)
        assert hang.entered.wait(5)  # the leader's firing loop is now stuck in a renewal
        assert eventually(lambda: new.engine._campaign.watching)  # the follower has seen the last renewal
        monotonic.advance(4.9)  # the lease's term (2 s) plus the grace (3 s) not yet passed: no takeover
        time.sleep(0.3)
        assert old.engine.is_leader and not new.engine.is_leader and len(_epochs(db)) == 1

        monotonic.advance(1.0)
        assert eventually(lambda: new.engine.is_leader, timeout_s=5)
        assert new.engine.wait_leader(5)
        first, second = _epochs(db)
        assert (first.replica_id, second.replica_id) == (old.engine.replica_id, new.engine.replica_id)
        assert second.reason.startswith(f"took over from epoch {first.epoch} (replica {old.engine.replica_id}")
        assert "not renewed for 5.9s" in second.reason
        assert second.backend_pid is not None and second.backend_pid != first.backend_pid

        # the stuck replica stepped down, reports it, and does not campaign while its loop is stuck
        assert eventually(lambda: not old.engine.is_leader)
        assert not _healthy(old) and _healthy(new)
        with pytest.raises(RuntimeError, match="firing loop"):
            old.engine.check()

        clock.advance(timedelta(minutes=5))
        new.engine.reconcile_now()
        assert [r.status for r in rows(db, task)] == ["pending"]

        hang.release()  # the old leader wakes up: its renewal finds another epoch current
        assert eventually(lambda: _healthy(old), timeout_s=10)
        assert old.engine.reconcile_now() is None  # a follower now: it fires nothing
        assert not old.engine.is_leader and new.engine.is_leader
        time.sleep(0.3)
        assert [r.status for r in rows(db, task)] == ["pending"]
        assert len(_epochs(db)) == 2
    finally:
        if hang is not None:
            hang.release()
        for r in replicas:
            r.engine.stop()


def test_a_leader_whose_epoch_is_no_longer_current_fires_nothing_and_steps_down(
    db: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The lock never says this replica lost (as with a session that survived a pause); only the lease does.
    clock = FakeClock(FUTURE)
    replica = make_replica(db, clock, "r1", lock=LocalLeaderLock())
    replica.engine.start()
    hang: Hang | None = None
    try:
        assert replica.engine.wait_leader(5)
        task = register(replica, "woken", "*/5 * * * *")
        assert eventually(lambda: replica.engine._scheduler is not None and replica.engine._scheduler.entry(task.id))
        hang = Hang(monkeypatch, replica)
        assert hang.entered.wait(5)
        lease_for(db).promote(  # another replica took over meanwhile
            replica_id="r2", backend_pid=None, now=clock.now(), expires_at=clock.now(), reason="takeover"
        )

        due = FUTURE.replace(minute=5, second=0)
        with pytest.raises(LeadershipLost, match="no longer the current one"):
            replica.engine._hand_on([Occurrence(task.id, due, "*/5 * * * *", "UTC")], {task.id: due})
        assert rows(db, task) == []

        caplog.set_level(logging.WARNING, logger="schedule_grpc.scheduling.engine")
        hang.release()  # its loop's next renewal fails: it steps down, then (the lock being free) leads again
        assert eventually(lambda: len(_epochs(db)) == 3 and replica.engine.wait_leader(0))
        assert [(e.replica_id, e.reason) for e in _epochs(db)] == [
            ("r1", "the leader lock was free"),
            ("r2", "takeover"),
            ("r1", "the leader lock was free"),
        ]
        stepped = [r for r in caplog.records if r.getMessage() == "stopped leading"]
        assert [getattr(r, "reason", None) for r in stepped] == ["epoch 1 is no longer the current one"]
        assert rows(db, task) == []
    finally:
        if hang is not None:
            hang.release()
        replica.engine.stop()


def test_a_live_leader_is_never_replaced_even_with_a_short_grace(db: Engine) -> None:
    clock = FakeClock(FUTURE)
    replicas = [make_replica(db, clock, f"r{i}", grace_s=0.3) for i in range(3)]
    for r in replicas:
        r.engine.start()
    try:
        assert eventually(lambda: sum(r.engine.is_leader for r in replicas) == 1)
        time.sleep(4)  # twice the lease's term plus the grace, on the real clock: renewals keep it
        assert len(_epochs(db)) == 1
        assert all(_healthy(r) for r in replicas)
    finally:
        for r in replicas:
            r.engine.stop()


def test_a_follower_never_terminates_a_backend_the_stale_lease_does_not_hold_the_lock_with(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, monotonic = FakeClock(FUTURE), FakeMonotonic()
    replicas = [make_replica(db, clock, f"r{i}", monotonic=monotonic) for i in range(2)]
    for r in replicas:
        r.engine.start()
    hang: Hang | None = None
    try:
        assert eventually(lambda: sum(r.engine.is_leader for r in replicas) == 1)
        (old,) = [r for r in replicas if r.engine.is_leader]
        (new,) = [r for r in replicas if r is not old]
        assert old.engine.wait_leader(5)
        hang = Hang(monkeypatch, old)
        assert hang.entered.wait(5)
        with db.connect() as bystander:  # the lease names a backend that does not hold the lock
            pid = bystander.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with db.begin() as conn:
                conn.execute(text("UPDATE leader_lease SET backend_pid = :p"), {"p": pid})
            assert eventually(lambda: new.engine._campaign.watching)
            monotonic.advance(60)
            time.sleep(0.5)
            assert bystander.execute(text("SELECT 1")).scalar_one() == 1  # still connected
        assert not new.engine.is_leader and len(_epochs(db)) == 1
    finally:
        if hang is not None:
            hang.release()
        for r in replicas:
            r.engine.stop()
