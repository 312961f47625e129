"""Several replicas on Postgres: one leader, epochs, takeover, changes by NOTIFY, a broken lock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from schedule_grpc.domain.firing import Occurrence
from schedule_grpc.store import db as dbm
from tests.integration.engine_support import FUTURE, Replica, make_replica, register, rows
from tests.support import FakeClock, eventually

pytestmark = pytest.mark.postgres


@pytest.fixture
def db(postgres_url: str) -> Iterator[Engine]:
    engine = dbm.make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def replicas(db: Engine) -> Iterator[tuple[FakeClock, list[Replica]]]:
    clock = FakeClock(FUTURE)
    started = [make_replica(db, clock, f"r{i}") for i in range(3)]
    for r in started:
        r.engine.start()
    assert eventually(lambda: sum(r.engine.is_leader for r in started) == 1)
    yield clock, started
    for r in started:
        r.engine.stop()


def _leader(replicas: list[Replica]) -> Replica:
    (leader,) = [r for r in replicas if r.engine.is_leader]
    return leader


def _epochs(db: Engine) -> list[tuple[int, str]]:
    with db.connect() as conn:
        return [(r.epoch, r.replica_id) for r in conn.execute(text("SELECT * FROM leader_epochs ORDER BY epoch"))]


def test_one_replica_leads_and_another_takes_over_within_a_second_when_it_stops(
    db: Engine, replicas: tuple[FakeClock, list[Replica]]
) -> None:
    _, started = replicas
    leader = _leader(started)
    assert leader.engine.wait_leader(5)
    began = time.monotonic()
    leader.engine.stop()
    assert eventually(lambda: any(r.engine.is_leader for r in started if r is not leader), timeout_s=5)
    assert time.monotonic() - began < 1.5
    new = _leader(started)
    epochs = _epochs(db)
    assert [e[1] for e in epochs] == [leader.engine.replica_id, new.engine.replica_id]
    assert epochs[1][0] > epochs[0][0] and new.engine.epoch == epochs[1][0]


def test_a_task_registered_through_a_follower_reaches_the_leader_by_notify(
    db: Engine, replicas: tuple[FakeClock, list[Replica]]
) -> None:
    clock, started = replicas
    leader = _leader(started)
    assert leader.engine.wait_leader(5)
    follower = next(r for r in started if r is not leader)
    task = register(follower, "via-follower", "*/5 * * * *")
    assert eventually(lambda: leader.engine._scheduler is not None and leader.engine._scheduler.entry(task.id))
    clock.advance(timedelta(minutes=5))
    assert follower.engine.reconcile_now() is None  # followers never fire
    leader.engine.reconcile_now()
    assert len(rows(db, task)) == 1


def test_a_leader_whose_lock_connection_breaks_stops_and_leadership_recovers(
    db: Engine, replicas: tuple[FakeClock, list[Replica]]
) -> None:
    _, started = replicas
    leader = _leader(started)
    assert leader.engine.wait_leader(5)
    with db.begin() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'schedule-grpc leader lock' AND datname = current_database()"
            )
        )
    assert eventually(lambda: len(_epochs(db)) == 2, timeout_s=5)
    assert eventually(lambda: sum(r.engine.is_leader for r in started) == 1)
    assert _leader(started).engine.wait_leader(5)


def test_a_deposed_leader_stores_nothing(db: Engine, replicas: tuple[FakeClock, list[Replica]]) -> None:
    clock, started = replicas
    leader = _leader(started)
    assert leader.engine.wait_leader(5)
    task = register(leader, "late", "*/5 * * * *")
    assert eventually(lambda: leader.engine._scheduler is not None and leader.engine._scheduler.entry(task.id))
    leader.engine.stop()
    clock.advance(timedelta(minutes=5))
    leader.engine._hand_on([Occurrence(task.id, FUTURE, "*/5 * * * *", "UTC")], {})
    assert rows(db, task) == []
