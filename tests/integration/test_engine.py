"""The scheduling engine on a real database: firing, the fence, catch-up, overlap, reconciliation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from schedule_grpc.domain.firing import MAX_MISSED_RECORDED, Occurrence
from schedule_grpc.domain.models import OverlapPolicy
from schedule_grpc.store import db as dbm
from schedule_grpc.store.occurrences import OccurrenceStore
from tests.integration.engine_support import FUTURE, Replica, make_replica, register, rows
from tests.support import FakeClock, eventually

MINUTE = timedelta(minutes=1)


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = dbm.make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(FUTURE)


@pytest.fixture
def replica(db: Engine, clock: FakeClock) -> Iterator[Replica]:
    r = make_replica(db, clock)
    r.engine.start()
    assert r.engine.wait_leader(10)
    yield r
    r.engine.stop()


def _next_run(db: Engine, name: str) -> datetime:
    with db.connect() as conn:
        value = conn.execute(text("SELECT next_run FROM scheduled_tasks WHERE name = :n"), {"n": name}).scalar()
    assert value is not None
    return _utc(value)


def test_each_instant_becomes_one_pending_row_and_next_run_moves_on(
    db: Engine, clock: FakeClock, replica: Replica
) -> None:
    task = register(replica, "every-5", "*/5 * * * *")
    assert eventually(lambda: task.id in _job_ids(db))
    first = datetime(2031, 6, 2, 9, 5, tzinfo=UTC)
    clock.set(first + timedelta(minutes=10, seconds=3))
    # The firing loop reads the same clock: its next pass or this reconciliation, whichever comes
    # first, hands the three instants on; the rows are the same either way.
    assert replica.engine.reconcile_now() is not None
    fired = rows(db, task)
    assert [_utc(r.scheduled_for) for r in fired] == [first, first + 5 * MINUTE, first + 10 * MINUTE]
    assert {(r.status, r.trigger, r.attempt) for r in fired} == {("pending", "schedule", 1)}
    assert _next_run(db, "every-5") == first + 15 * MINUTE
    assert replica.wakeups  # the executor was woken up
    # Reconciling again at the same instant fires nothing more.
    replica.engine.reconcile_now()
    assert len(rows(db, task)) == 3


def test_a_second_insert_of_an_occurrence_is_ignored_and_counted(db: Engine, clock: FakeClock) -> None:
    replica = make_replica(db, clock)
    task = register(replica, "fenced", "0 * * * *")
    instant = datetime(2031, 6, 2, 10, tzinfo=UTC)
    store = OccurrenceStore(db)
    occurrence = Occurrence(task.id, instant, "0 * * * *", "UTC")
    clock.set(instant)
    assert store.enqueue([occurrence], {}, instant).pending == 1
    again = store.enqueue([occurrence, occurrence], {}, instant)
    assert again.duplicates == 2 and again.pending == 0
    assert len(rows(db, task)) == 1


def test_occurrences_beyond_the_catch_up_window_are_recorded_missed_and_bounded(
    db: Engine, clock: FakeClock, replica: Replica
) -> None:
    task = register(replica, "minutely", "* * * * *", window=timedelta(minutes=10))
    assert eventually(lambda: task.id in _job_ids(db))
    replica.engine.stop()  # down for three days; the next leader catches up before its loop runs
    clock.advance(timedelta(days=3))
    after = make_replica(db, clock, "r2")
    after.engine.start()
    try:
        assert after.engine.wait_leader(10)
    finally:
        after.engine.stop()
    recorded = rows(db, task)
    missed = [r for r in recorded if r.status == "missed"]
    pending = [r for r in recorded if r.status == "pending"]
    assert len(missed) == MAX_MISSED_RECORDED
    assert all("catch-up window of 600s" in r.error for r in missed)
    assert "not recorded one by one" in missed[-1].error
    assert len(pending) == 10  # the minutes of the last ten run late


def test_catch_up_writes_a_bounded_number_of_rows_per_pass_and_finishes_in_later_passes(
    db: Engine, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="schedule_grpc")
    replica = make_replica(db, clock, max_catchup_rows=100, interval_s=3600)
    replica.engine.start()
    try:
        assert replica.engine.wait_leader(10)
        tasks = [register(replica, f"minutely-{i}", "* * * * *", window=timedelta(hours=1)) for i in range(3)]
        assert eventually(lambda: all(t.id in _job_ids(db) for t in tasks))
        replica.engine.stop()  # down for two hours: 3 tasks x (60 missed + 60 late) = 360 rows to catch up
        clock.advance(timedelta(hours=2))
        replica = make_replica(db, clock, "r2", max_catchup_rows=100, interval_s=3600)
        replica.engine.start()
        assert replica.engine.wait_leader(10)
        # the promotion's pass wrote 100; the engine follows with further passes of at most 100 on its own
        assert eventually(lambda: len(rows(db)) == 360, timeout_s=20), len(rows(db))
        for task in tasks:
            instants = [r.scheduled_for for r in rows(db, task)]
            assert len(instants) == len(set(instants)) == 120  # each minute once, none lost, none twice
            task_id = task.id
            assert eventually(lambda: task_id in _job_ids(db))  # caught up: back to its job  # noqa: B023
    finally:
        replica.engine.stop()
    passes = [getattr(r, "caught_up", 0) for r in caplog.records if r.getMessage() == "reconciled"]
    assert max(passes) <= 100 and sum(passes) == 360 and len([p for p in passes if p]) >= 4, passes


def test_overlap_skip_records_the_skipped_occurrence_with_its_reason(
    db: Engine, clock: FakeClock, replica: Replica
) -> None:
    task = register(replica, "slow", "*/10 * * * *", overlap=OverlapPolicy.SKIP)
    assert eventually(lambda: task.id in _job_ids(db))
    clock.set(datetime(2031, 6, 2, 9, 20, 1, tzinfo=UTC))
    replica.engine.reconcile_now()
    statuses = [(r.status, r.error) for r in rows(db, task)]
    assert statuses[0] == ("pending", None)
    assert statuses[1][0] == "skipped" and "overlap policy skip" in statuses[1][1]


def test_overlap_queue_one_keeps_one_waiting_behind_a_running_execution(
    db: Engine, clock: FakeClock, replica: Replica
) -> None:
    task = register(replica, "queued", "*/10 * * * *", overlap=OverlapPolicy.QUEUE_ONE)
    assert eventually(lambda: task.id in _job_ids(db))
    clock.set(datetime(2031, 6, 2, 9, 10, 1, tzinfo=UTC))
    replica.engine.reconcile_now()
    with db.begin() as conn:  # the executor started it
        conn.execute(text("UPDATE task_executions SET status = 'running' WHERE task_id = :t"), {"t": task.id})
    clock.set(datetime(2031, 6, 2, 9, 30, 1, tzinfo=UTC))
    replica.engine.reconcile_now()
    assert [r.status for r in rows(db, task)] == ["running", "pending", "skipped"]


def test_disabling_or_deleting_a_task_stops_its_firing(db: Engine, clock: FakeClock, replica: Replica) -> None:
    kept = register(replica, "kept", "*/5 * * * *")
    paused = register(replica, "paused", "*/5 * * * *")
    gone = register(replica, "gone", "*/5 * * * *")
    replica.tasks.disable(None, "paused")
    replica.tasks.unregister(None, "gone")
    assert eventually(lambda: _job_ids(db) == {kept.id})
    clock.advance(timedelta(minutes=6))
    replica.engine.reconcile_now()
    assert len(rows(db, kept)) == 1
    assert rows(db, paused) == [] and rows(db, gone) == []
    assert replica.engine.totals.pending == 1


def test_a_registered_task_is_in_the_scheduler_at_once(db: Engine, replica: Replica) -> None:
    task = register(replica, "new", "@daily")
    assert eventually(lambda: task.id in _job_ids(db))


def test_the_scheduler_loop_fires_a_due_task_on_the_injected_clock(db: Engine, clock: FakeClock) -> None:
    # No reconciliation here: the firing loop itself reads the engine's clock, so moving the clock
    # past an instant is enough for its next pass (within a second) to fire it.
    replica = make_replica(db, clock, interval_s=3600)
    replica.engine.start()
    try:
        assert replica.engine.wait_leader(10)
        task = register(replica, "loop", "* * * * *")
        assert eventually(lambda: task.id in _job_ids(db))
        first = datetime(2031, 6, 2, 9, 1, tzinfo=UTC)
        assert _next_run(db, "loop") == first
        clock.set(first + timedelta(seconds=2))
        assert eventually(lambda: len(rows(db, task)) == 1)
        assert [(_utc(r.scheduled_for), r.status) for r in rows(db, task)] == [(first, "pending")]
        # the tasks table's next run moved on first; the loop's own entry follows it
        assert eventually(lambda: _next_run(db, "loop") == first + MINUTE and _job_next(db, task.id) == first + MINUTE)
    finally:
        replica.engine.stop()
    assert not replica.engine.is_leader


def test_with_a_fire_lead_the_loop_stores_an_instant_that_long_before_it(db: Engine, clock: FakeClock) -> None:
    replica = make_replica(db, clock, interval_s=3600, lead_s=1.0)
    replica.engine.start()
    try:
        assert replica.engine.wait_leader(10)
        task = register(replica, "ahead", "* * * * *")
        assert eventually(lambda: task.id in _job_ids(db))
        first = datetime(2031, 6, 2, 9, 1, tzinfo=UTC)
        clock.set(first - timedelta(seconds=1.5))
        replica.engine.task_changed("ahead")  # a pass of the loop at this time: nothing within the lead yet
        assert eventually(lambda: _job_next(db, task.id) == first)
        assert rows(db, task) == []
        clock.set(first - timedelta(seconds=0.5))
        assert eventually(lambda: len(rows(db, task)) == 1)
        # stored half a second before its instant, due at the instant itself
        [row] = rows(db, task)
        assert (_utc(row.scheduled_for), _utc(row.due_at), row.status) == (first, first, "pending")
    finally:
        replica.engine.stop()


def test_a_failing_loop_shows_in_health_and_heals(db: Engine, clock: FakeClock, replica: Replica) -> None:
    register(replica, "any", "@hourly")
    with db.begin() as conn:
        conn.execute(text("ALTER TABLE apscheduler_jobs RENAME TO apscheduler_jobs_away"))
    replica.engine._scheduler.wakeup()  # type: ignore[union-attr]
    assert eventually(lambda: _failing(replica))
    with db.begin() as conn:
        conn.execute(text("ALTER TABLE apscheduler_jobs_away RENAME TO apscheduler_jobs"))
    replica.engine._scheduler.wakeup()  # type: ignore[union-attr]
    assert eventually(lambda: not _failing(replica))


def test_a_dead_scheduler_loop_is_restarted(db: Engine, clock: FakeClock, replica: Replica) -> None:
    task = register(replica, "survivor", "*/5 * * * *")
    assert eventually(lambda: task.id in _job_ids(db))
    old = replica.engine._scheduler
    assert old is not None
    old.shutdown(wait=False)  # the loop thread ends, as when APScheduler dies
    assert eventually(lambda: replica.engine._scheduler is not None and replica.engine._scheduler is not old)
    clock.advance(timedelta(minutes=5))
    replica.engine.reconcile_now()
    assert len(rows(db, task)) == 1


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite through raw SQL
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _failing(replica: Replica) -> bool:
    try:
        replica.engine.check()
    except RuntimeError:
        return True
    return False


def _job_next(db: Engine, task_id: str) -> datetime:
    with db.connect() as conn:
        value = conn.execute(text("SELECT next_run_time FROM apscheduler_jobs WHERE id = :i"), {"i": task_id}).scalar()
    assert value is not None
    return datetime.fromtimestamp(float(value), UTC)


def _job_ids(db: Engine) -> set[str]:
    with db.connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT id FROM apscheduler_jobs"))}


def test_an_occurrence_of_a_replaced_schedule_is_dropped(db: Engine, clock: FakeClock) -> None:
    replica = make_replica(db, clock)
    task = register(replica, "changed", "0 * * * *")
    store = OccurrenceStore(db)
    instant = datetime(2031, 6, 2, 10, tzinfo=UTC)
    before = _next_run(db, "changed")
    result = store.enqueue([Occurrence(task.id, instant, "*/5 * * * *", "UTC")], {task.id: instant + MINUTE}, instant)
    assert result.dropped == 1 and rows(db, task) == []
    assert _next_run(db, "changed") == before
