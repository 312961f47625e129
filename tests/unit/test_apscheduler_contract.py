"""What ``scheduling/apscheduler.py`` relies on in APScheduler 3 is still there and still behaves.

An APScheduler release that renames, removes or reshapes one of these fails here, by name, rather
than as a firing loop that silently stops firing. The list mirrors the adapter's docstring.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import requires, version

import pytest
from packaging.requirements import Requirement
from sqlalchemy import Engine

from schedule_grpc.domain.cron import CronSchedule
from schedule_grpc.scheduling.apscheduler import Due, TaskScheduler
from schedule_grpc.store import db as dbm
from tests.support import FakeClock, eventually

FUTURE = datetime(2031, 6, 2, 9, 0, 30, tzinfo=UTC)  # years after the wall clock: only the fake clock can fire


def _parameters(owner: object, name: str) -> list[str]:
    member = getattr(owner, name, None)
    assert callable(member), f"APScheduler no longer has {owner!r}.{name}, which the adapter relies on"
    return list(inspect.signature(member).parameters)


def test_the_installed_apscheduler_is_in_the_pinned_range() -> None:
    pinned = [Requirement(r) for r in requires("schedule-grpc") or [] if r.lower().startswith("apscheduler")]
    assert pinned, "pyproject.toml no longer pins APScheduler"
    installed = version("apscheduler")
    assert pinned[0].specifier.contains(installed), f"APScheduler {installed} is outside {pinned[0].specifier}"


@pytest.mark.parametrize(
    ("module", "owner", "name", "expected"),
    [
        ("apscheduler.schedulers.blocking", "BlockingScheduler", "_main_loop", ["self"]),
        ("apscheduler.schedulers.base", "BaseScheduler", "_process_jobs", ["self"]),
        ("apscheduler.schedulers.base", "BaseScheduler", "start", ["self", "paused"]),
        ("apscheduler.schedulers.base", "BaseScheduler", "resume", ["self"]),
        ("apscheduler.schedulers.base", "BaseScheduler", "wakeup", ["self"]),
        ("apscheduler.schedulers.base", "BaseScheduler", "shutdown", ["self", "wait"]),
        ("apscheduler.schedulers.base", "BaseScheduler", "add_jobstore", ["self", "jobstore", "alias"]),
        ("apscheduler.schedulers.base", "BaseScheduler", "get_jobs", ["self", "jobstore", "pending"]),
        ("apscheduler.schedulers.base", "BaseScheduler", "get_job", ["self", "job_id", "jobstore"]),
        ("apscheduler.schedulers.base", "BaseScheduler", "remove_job", ["self", "job_id", "jobstore"]),
        ("apscheduler.schedulers.base", "BaseScheduler", "modify_job", ["self", "job_id", "jobstore", "changes"]),
        ("apscheduler.job", "Job", "_modify", ["self", "changes"]),
        ("apscheduler.job", "Job", "__getstate__", ["self"]),
        ("apscheduler.jobstores.sqlalchemy", "SQLAlchemyJobStore", "get_due_jobs", ["self", "now"]),
        ("apscheduler.jobstores.sqlalchemy", "SQLAlchemyJobStore", "get_next_run_time", ["self"]),
        ("apscheduler.jobstores.sqlalchemy", "SQLAlchemyJobStore", "get_all_jobs", ["self"]),
        ("apscheduler.jobstores.sqlalchemy", "SQLAlchemyJobStore", "lookup_job", ["self", "job_id"]),
        ("apscheduler.jobstores.sqlalchemy", "SQLAlchemyJobStore", "add_job", ["self", "job"]),
        ("apscheduler.jobstores.sqlalchemy", "SQLAlchemyJobStore", "update_job", ["self", "job"]),
        ("apscheduler.jobstores.sqlalchemy", "SQLAlchemyJobStore", "remove_job", ["self", "job_id"]),
        ("apscheduler.triggers.base", "BaseTrigger", "get_next_fire_time", ["self", "previous_fire_time", "now"]),
    ],
)
def test_a_method_the_adapter_calls_or_replaces_keeps_its_signature(
    module: str, owner: str, name: str, expected: list[str]
) -> None:
    cls = getattr(importlib.import_module(module), owner)
    assert _parameters(cls, name)[: len(expected)] == expected, f"{module}.{owner}.{name} changed its signature"


def test_add_job_still_takes_every_option_the_adapter_passes() -> None:
    from apscheduler.schedulers.base import BaseScheduler

    options = set(_parameters(BaseScheduler, "add_job"))
    used = {"func", "trigger", "id", "name", "args", "next_run_time", "misfire_grace_time", "coalesce"}
    used |= {"max_instances", "replace_existing", "jobstore"}
    assert used <= options, f"BaseScheduler.add_job no longer takes {sorted(used - options)}"


def test_the_names_the_adapter_imports_still_exist() -> None:
    from apscheduler.jobstores import base
    from apscheduler.schedulers import base as schedulers
    from apscheduler.util import datetime_to_utc_timestamp

    assert issubclass(base.JobLookupError, Exception), "apscheduler.jobstores.base.JobLookupError"
    assert schedulers.STATE_PAUSED != schedulers.STATE_RUNNING, "apscheduler.schedulers.base.STATE_PAUSED"
    assert datetime_to_utc_timestamp(FUTURE) == FUTURE.timestamp(), "apscheduler.util.datetime_to_utc_timestamp"


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Engine]:
    engine = dbm.make_engine(sqlite_url)
    yield engine
    engine.dispose()


class _Loop:
    """A ``TaskScheduler`` on a real SQLite file and a fake clock, recording what its passes do."""

    def __init__(self, db: Engine, clock: FakeClock) -> None:
        self.passes = 0
        self.threads: set[str] = set()
        self.due: list[Due] = []
        self.fired = threading.Event()
        self.errors: list[BaseException] = []
        self.scheduler = TaskScheduler(
            db,
            now=clock.now,
            on_due=self._on_due,
            on_error=self.errors.append,
            on_pass=lambda: None,
            retry_s=0.05,
            before_pass=self._before_pass,
            max_wait_s=0.05,
        )

    def _before_pass(self, scheduler: TaskScheduler) -> bool:
        self.passes += 1
        self.threads.add(threading.current_thread().name)
        return True

    def _on_due(self, due: list[Due]) -> None:
        self.due.extend(due)
        self.fired.set()


def test_the_loop_thread_runs_our_pass_on_the_injected_clock_and_moves_the_entry_on(db: Engine) -> None:
    clock = FakeClock(FUTURE)
    loop = _Loop(db, clock)
    scheduler = loop.scheduler
    schedule = CronSchedule.parse("* * * * *", "UTC")
    instant = datetime(2031, 6, 2, 9, 1, tzinfo=UTC)
    scheduler.start(paused=True)
    try:
        assert scheduler.loop_alive, "BackgroundScheduler no longer keeps its loop thread in _thread"
        scheduler.put("t1", "task one", schedule, instant, exists=False)
        assert not loop.fired.wait(0.3) and loop.passes == 0, "the loop of a paused scheduler woke up"
        scheduler.resume()
        assert eventually(lambda: loop.passes >= 2), "the loop thread does not call _process_jobs (our pass)"
        assert threading.current_thread().name not in loop.threads
        assert not loop.due, "the pass fired by the wall clock, not the injected one"
        clock.set(instant + timedelta(seconds=2))
        assert loop.fired.wait(5), "moving the injected clock past an instant did not fire it"
        assert loop.due == [Due("t1", schedule, [instant], instant + timedelta(minutes=1))]
        assert eventually(lambda: _entry_next(scheduler) == instant + timedelta(minutes=1))
        assert loop.errors == []
    finally:
        assert scheduler.stop_within(5), "shutdown(wait=False) did not end the loop"
    assert not scheduler.loop_alive


def test_holding_the_adapters_lock_keeps_entry_writes_out(db: Engine) -> None:
    # Reconciliation holds it to keep passes out; it must be the lock add_job and remove_job take.
    scheduler = _Loop(db, FakeClock(FUTURE)).scheduler
    scheduler.start(paused=True)
    written = threading.Event()
    schedule = CronSchedule.parse("* * * * *", "UTC")

    def put() -> None:
        scheduler.put("t2", "task two", schedule, FUTURE + timedelta(minutes=1), exists=False)
        written.set()

    try:
        with scheduler.lock:
            writer = threading.Thread(target=put)
            writer.start()
            assert not written.wait(0.3), "add_job does not take _jobstores_lock"
        assert written.wait(5)
        writer.join(5)
        assert set(scheduler.entries()) == {"t2"}
    finally:
        scheduler.stop_within(5)


def _entry_next(scheduler: TaskScheduler) -> datetime | None:
    entry = scheduler.entry("t1")
    return None if entry is None else entry.next_run
