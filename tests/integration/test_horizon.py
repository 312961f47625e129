"""The scheduler's horizon: only tasks due soon have an APScheduler job; the rest wait in the tasks table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from schedule_grpc.domain.cron import CronSchedule
from schedule_grpc.scheduling.apscheduler import TaskScheduler
from schedule_grpc.store import db as dbm
from tests.integration.engine_support import FUTURE, Replica, make_replica, register, rows
from tests.support import FakeClock, eventually

HORIZON = timedelta(minutes=10)


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = dbm.make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(FUTURE)  # 2031-06-02 09:00:30


@pytest.fixture
def replica(db: Engine, clock: FakeClock) -> Iterator[Replica]:
    r = make_replica(db, clock, horizon_s=HORIZON.total_seconds())
    r.engine.start()
    assert r.engine.wait_leader(10)
    yield r
    r.engine.stop()


def _job_ids(db: Engine) -> set[str]:
    with db.connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT id FROM apscheduler_jobs"))}


def _next_run(db: Engine, task_id: str) -> datetime:
    with db.connect() as conn:
        value = conn.execute(text("SELECT next_run FROM scheduled_tasks WHERE id = :i"), {"i": task_id}).scalar()
    assert value is not None
    if isinstance(value, str):  # SQLite through raw SQL
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def test_a_task_due_beyond_the_horizon_gets_its_job_once_it_comes_within_it(
    db: Engine, clock: FakeClock, replica: Replica
) -> None:
    soon = register(replica, "soon", "*/5 * * * *")
    daily = register(replica, "daily", "0 12 * * *")
    assert eventually(lambda: soon.id in _job_ids(db))
    assert daily.id not in _job_ids(db)
    noon = datetime(2031, 6, 2, 12, tzinfo=UTC)
    assert _next_run(db, daily.id) == noon  # kept in the tasks table meanwhile
    clock.set(noon - timedelta(minutes=5))
    replica.engine.reconcile_now()
    assert daily.id in _job_ids(db)
    clock.set(noon + timedelta(seconds=1))
    replica.engine.reconcile_now()
    fired = rows(db, daily)
    assert [(r.status, r.trigger) for r in fired] == [("pending", "schedule")]
    assert _next_run(db, daily.id) == noon + timedelta(days=1)


def test_a_task_whose_next_fire_moves_beyond_the_horizon_gives_its_job_up(
    db: Engine, clock: FakeClock, replica: Replica
) -> None:
    hourly = register(replica, "hourly", "5 * * * *")
    assert eventually(lambda: hourly.id in _job_ids(db))
    clock.set(datetime(2031, 6, 2, 9, 5, 1, tzinfo=UTC))
    result = replica.engine.reconcile_now()  # the instant is caught up here or by the loop's pass meanwhile
    assert result is not None and result.removed == 1
    assert hourly.id not in _job_ids(db)
    assert len(rows(db, hourly)) == 1
    assert _next_run(db, hourly.id) == datetime(2031, 6, 2, 10, 5, tzinfo=UTC)


def test_enabling_a_task_due_far_ahead_adds_no_job_and_disabling_removes_one(
    db: Engine, clock: FakeClock, replica: Replica
) -> None:
    yearly = register(replica, "yearly", "@yearly")
    minutely = register(replica, "minutely", "* * * * *")
    assert eventually(lambda: minutely.id in _job_ids(db))
    replica.tasks.disable(None, "minutely")
    assert eventually(lambda: minutely.id not in _job_ids(db))
    assert yearly.id not in _job_ids(db)


def test_a_promotion_pages_through_many_tasks_and_adds_only_those_due_soon(db: Engine, clock: FakeClock) -> None:
    # 2,500 tasks over three pages; a quarter due within the horizon (minute 5 of each hour).
    due = datetime(2031, 6, 2, 9, 5, tzinfo=UTC)
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scheduled_tasks (id, name, schedule, timezone, handler, enabled, metadata, next_run,"
                " created_at, updated_at, retry_max, retry_initial_delay_s, retry_multiplier, retry_max_delay_s,"
                " retry_jitter, timeout_s, overlap_policy, catchup_window_s, critical)"
                " VALUES (:id, :name, :schedule, 'UTC', 'http', true, '{}', :next_run, :now, :now, 0, 1, 2, 60,"
                " false, 30, 'allow', 3600, false)"
            ),
            [
                {
                    "id": f"t-{i:05d}",
                    "name": f"task-{i:05d}",
                    "schedule": f"{(i % 4) * 15 + 5} * * * *",
                    "next_run": due + timedelta(minutes=(i % 4) * 15) if i % 3 else None,
                    "now": FUTURE,
                }
                for i in range(2500)
            ],
        )
    replica = make_replica(db, clock, horizon_s=HORIZON.total_seconds())
    replica.engine.start()
    try:
        assert replica.engine.wait_leader(30)
        assert _job_ids(db) == {f"t-{i:05d}" for i in range(2500) if i % 4 == 0}
        with db.connect() as conn:
            unknown = conn.execute(text("SELECT count(*) FROM scheduled_tasks WHERE next_run IS NULL")).scalar()
        assert unknown == 0  # every task's next run was computed and stored, with or without a job
        clock.set(due + timedelta(seconds=2))
        assert replica.engine.reconcile_now() is not None  # or the loop's pass, on the same clock, fired first
        assert len(rows(db)) == 625
    finally:
        replica.engine.stop()


def test_a_batch_of_entry_writes_lands_in_one_go_or_not_at_all(db: Engine) -> None:
    scheduler = TaskScheduler(
        db,
        now=lambda: FUTURE,
        on_due=lambda due: None,
        on_error=lambda error: None,
        on_pass=lambda: None,
        retry_s=0.05,
    )
    scheduler.start(paused=True)
    schedule = CronSchedule.parse("* * * * *", "UTC")

    def add(task_id: str) -> None:
        scheduler.put(task_id, task_id, schedule, FUTURE, exists=False)

    try:
        with pytest.raises(RuntimeError), scheduler.lock, scheduler.batched():
            add("lost")
            assert scheduler.entry("lost") is not None  # visible inside the block
            raise RuntimeError("the reconciliation failed")
        assert _job_ids(db) == set()
        with scheduler.lock, scheduler.batched():
            add("a")
            add("b")
            assert scheduler.drop("a")
            assert _job_ids(db) == set()  # nothing written before the block ends
        assert _job_ids(db) == {"b"}
        with scheduler.lock, scheduler.batched():
            add("b")  # replaces
            scheduler.put("b", "b", schedule, FUTURE + timedelta(minutes=1), exists=True)
        assert [e.next_run for e in scheduler.entries().values()] == [FUTURE + timedelta(minutes=1)]
    finally:
        scheduler.shutdown(wait=False)
