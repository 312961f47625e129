"""The schema on a real database: migrations, the occurrence fence, time zones round-trip."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from schedule_grpc.domain.firing import Occurrence
from schedule_grpc.domain.models import Trigger
from schedule_grpc.store import db
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.occurrences import OccurrenceStore
from schedule_grpc.store.tasks import TaskStore
from tests.support import NOW, make_execution, make_task


def test_a_scheduled_occurrence_can_be_inserted_only_once(database_url: str) -> None:
    engine = db.make_engine(database_url)
    tasks, executions = TaskStore(engine), ExecutionStore(engine)
    task = tasks.insert(make_task())
    executions.insert(make_execution(task, Trigger.SCHEDULE, NOW))
    with pytest.raises(IntegrityError) as caught:
        executions.insert(make_execution(task, Trigger.SCHEDULE, NOW))
    assert db.is_unique_violation(caught.value)
    # Its retry is a different attempt; manual runs at the same instant are not fenced.
    executions.insert(make_execution(task, Trigger.RETRY, NOW, attempt=2))
    executions.insert(make_execution(task, Trigger.MANUAL, NOW))
    executions.insert(make_execution(task, Trigger.MANUAL, NOW))
    assert len(executions.history(task.name, limit=10)) == 4
    engine.dispose()


def test_times_come_back_as_the_same_utc_instant(database_url: str) -> None:
    engine = db.make_engine(database_url)
    tasks = TaskStore(engine)
    berlin = datetime(2026, 7, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    task = tasks.insert(make_task())
    tasks.set_last_run(task.id, berlin)
    tasks.set_last_run(task.id, berlin - timedelta(hours=1))  # never moves backwards
    stored = tasks.get("t")
    assert stored is not None and stored.last_run == berlin and stored.last_run.tzinfo == UTC
    engine.dispose()


def test_migrations_go_down_and_up_again(database_url: str) -> None:
    from alembic import command

    engine = db.make_engine(database_url)
    config = db._alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    db.migrate(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"scheduled_tasks", "task_executions", "dead_letters", "leader_epochs"} <= tables
    engine.dispose()


@pytest.mark.postgres
def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    engine = db.make_engine(postgres_url)
    with engine.begin() as conn:
        # every table, whichever migrations made them
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    failures: list[BaseException] = []

    def start_replica() -> None:
        replica = create_engine(postgres_url)
        try:
            db.migrate(replica)
        except BaseException as error:
            failures.append(error)
        finally:
            replica.dispose()

    threads = [threading.Thread(target=start_replica) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with engine.connect() as conn:
        heads = ScriptDirectory.from_config(db._alembic_config()).get_heads()
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == heads
    engine.dispose()


@pytest.mark.postgres
def test_every_task_change_is_announced_on_postgres(postgres_url: str) -> None:
    import psycopg

    from schedule_grpc.store.tasks import CHANGES_CHANNEL

    conninfo = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANGES_CHANNEL}")
        engine = db.make_engine(postgres_url)
        tasks = TaskStore(engine)
        tasks.insert(make_task("announced"))
        tasks.set_enabled("announced", enabled=False, next_run=None, now=NOW)
        tasks.delete("announced")
        payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=3)]
        engine.dispose()
    assert payloads == ["announced", "announced", "announced"]


def test_two_passes_storing_the_same_task_at_once_never_deadlock(postgres_url: str) -> None:
    # A deposed leader's last pass and its successor's catch-up may store the same occurrences at once: both
    # insert (the fence keeps one) and both move the task's next_run, each in one transaction.
    engine = db.make_engine(postgres_url)
    task = TaskStore(engine).insert(make_task("contended"))
    store = OccurrenceStore(engine)
    errors: list[BaseException] = []
    rounds = 15
    start = threading.Barrier(2)

    def pass_(offset: int) -> None:
        for minute in range(rounds):
            instant = NOW + timedelta(minutes=minute)
            occurrence = Occurrence(task.id, instant, task.schedule, task.timezone)
            start.wait(10)
            try:
                store.enqueue([occurrence], {task.id: instant + timedelta(minutes=1, seconds=offset)}, instant)
            except BaseException as error:  # reported by the assertion below
                errors.append(error)

    threads = [threading.Thread(target=pass_, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stored = ExecutionStore(engine).history("contended", limit=100)
    engine.dispose()

    assert errors == []
    assert sorted(x.scheduled_for for x in stored) == [NOW + timedelta(minutes=m) for m in range(rounds)]
