"""The one module that knows APScheduler 3: its loop thread, its SQLAlchemy job store and its jobs.

The rest of the engine sees ``TaskScheduler``: a table of *entries* (a task's schedule and the next
instant it is due, each stored as a job of APScheduler's SQLAlchemy job store) and a loop thread that
runs a firing pass whenever an entry is due, with the engine's injected clock.

What this module relies on in APScheduler 3 (``tests/unit/test_apscheduler_contract.py`` checks each
one, so an APScheduler release that changes any of them fails there, naming it):

* ``BackgroundScheduler`` runs ``_main_loop`` in a thread kept in ``_thread``; the loop calls
  ``_process_jobs()`` with no arguments and then waits the number of seconds it returned (``None``:
  until ``wakeup()``). ``TaskScheduler`` replaces ``_process_jobs`` with its own pass, so APScheduler's
  pass (its wall clock, its executors, its events) is never run.
* ``_jobstores`` (alias -> job store) and ``_jobstores_lock``, the lock ``add_job``, ``modify_job`` and
  ``remove_job`` take; the pass and a reconciliation hold it too.
* ``Job._modify(next_run_time=...)`` sets a job's next run without a round trip to its store.
* ``SQLAlchemyJobStore``: its ``engine``, ``jobs_t`` and ``pickle_protocol`` attributes, its public
  store methods (``add_job``, ``update_job``, ``remove_job``, ``lookup_job``, ``get_due_jobs``,
  ``get_next_run_time``, ``get_all_jobs``), and ``Job.__getstate__`` for the pickled state of a row.
* The public ``state``/``STATE_PAUSED``, ``start(paused=True)``, ``resume``, ``add_job``, ``get_jobs``,
  ``remove_job``, ``shutdown(wait=False)`` and ``wakeup`` of the scheduler, and the ``BaseTrigger`` base
  class of ``CronTaskTrigger``.

A pass is two transactions: the due instants are handed on first (the engine stores them behind the
fence, with the tasks' new ``next_run``), then the entries' new next instants, in one batch. A crash
between the two only replays instants, which the fence ignores.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED
from apscheduler.util import datetime_to_utc_timestamp

from schedule_grpc.domain.cron import CronSchedule
from schedule_grpc.scheduling.jobs import FIRE_REF
from schedule_grpc.scheduling.trigger import CronTaskTrigger
from schedule_grpc.store.leader import LeadershipLost
from schedule_grpc.store.schedule_jobs import JobRow, replace_job_rows, write_job_rows

log = logging.getLogger(__name__)

_STORE = "default"


@dataclass(frozen=True)
class Entry:
    """A task the scheduler holds: its schedule and the next instant it is due."""

    task_id: str
    schedule: CronSchedule
    next_run: datetime


@dataclass(frozen=True)
class Due:
    """What a pass found due for one task: its instants up to now, and the first instant after them."""

    task_id: str
    schedule: CronSchedule
    instants: list[datetime]
    next_run: datetime


OnDue = Callable[[list[Due]], None]


class _BatchingJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """SQLAlchemyJobStore whose writes inside ``batched()`` go out together, in one transaction."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine=engine)
        self._batch: dict[str, Job | None] | None = None  # job id -> its new state, None: removed

    @contextmanager
    def batched(self) -> Iterator[None]:
        self._batch = batch = dict[str, Job | None]()
        try:
            yield
        finally:
            self._batch = None
        replace_job_rows(
            self.engine,
            self.jobs_t,
            [self._row(j) for j in batch.values() if j],
            [i for i, j in batch.items() if j is None],
        )

    def add_job(self, job: Job) -> None:
        if self._batch is not None:
            self._batch[job.id] = job  # replaces an existing job when written
        else:
            super().add_job(job)

    def update_job(self, job: Job) -> None:
        if self._batch is not None:
            self._batch[job.id] = job
        else:
            super().update_job(job)

    def remove_job(self, job_id: str) -> None:
        if self._batch is not None:
            self._batch[job_id] = None
        else:
            super().remove_job(job_id)

    def lookup_job(self, job_id: str) -> Job | None:
        if self._batch is not None and job_id in self._batch:
            return self._batch[job_id]
        job: Job | None = super().lookup_job(job_id)
        return job

    def write_moved(self, jobs: list[Job]) -> None:
        """The new next run of each job of a pass, in one transaction."""
        write_job_rows(self.engine, self.jobs_t, [self._row(j) for j in jobs])

    def _row(self, job: Job) -> JobRow:
        state = pickle.dumps(job.__getstate__(), self.pickle_protocol)
        return job.id, datetime_to_utc_timestamp(job.next_run_time), state

    def shutdown(self) -> None:
        """The database engine belongs to the service, which disposes of it."""


class TaskScheduler(BackgroundScheduler):  # type: ignore[misc]
    """APScheduler's loop and job store, with our own firing pass on the injected clock.

    Each pass calls ``before_pass`` first (the engine renews its lease there); when it answers False
    the pass is skipped. The loop wakes at least every ``max_wait_s`` even with nothing due, so that
    renewal is the loop's own heartbeat. A pass's error is reported (``on_error``) and the pass retried
    after ``retry_s``; a pass that learns midway that leadership was lost (``LeadershipLost``) writes
    nothing. ``on_pass`` follows every pass that went through.
    """

    def __init__(
        self,
        database: Any,
        *,
        now: Callable[[], datetime],
        on_due: OnDue,
        on_error: Callable[[BaseException], None],
        on_pass: Callable[[], None],
        retry_s: float,
        before_pass: Callable[[TaskScheduler], bool] | None = None,
        max_wait_s: float | None = None,
    ) -> None:
        super().__init__(timezone=UTC)
        # APScheduler logs every job added at INFO: one line per task per reconciliation.
        logging.getLogger("apscheduler").setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))
        self._now = now
        self._on_due = on_due
        self._on_error = on_error
        self._on_pass = on_pass
        self._retry_s = retry_s
        self._before_pass = before_pass
        self._max_wait_s = max_wait_s
        self._store = _BatchingJobStore(database)
        self.add_jobstore(self._store, _STORE)

    # --- the entries ------------------------------------------------------------------------

    @property
    def lock(self) -> Any:
        """The lock a pass holds; holding it keeps passes out (reconciliation)."""
        return self._jobstores_lock

    def batched(self) -> Any:
        """Entry writes of the block go to the database together when it ends without error."""
        return self._store.batched()

    def entries(self) -> dict[str, Entry]:
        return {job.id: _entry(job) for job in self.get_jobs()}

    def entry(self, task_id: str) -> Entry | None:
        job = self.get_job(task_id)
        return None if job is None else _entry(job)

    def put(self, task_id: str, name: str, schedule: CronSchedule, next_run: datetime, *, exists: bool) -> None:
        """Holds the task due at ``next_run`` (replacing what was held for it when ``exists``)."""
        trigger = CronTaskTrigger(schedule.expression, schedule.timezone)
        if exists:
            self.modify_job(task_id, _STORE, trigger=trigger, next_run_time=next_run)
            return
        self.add_job(
            FIRE_REF,
            trigger=trigger,
            id=task_id,
            name=name,
            args=[task_id],
            next_run_time=next_run,
            misfire_grace_time=None,  # lateness is judged by the catch-up window, not dropped
            coalesce=False,
            max_instances=1,
            replace_existing=True,
            jobstore=_STORE,
        )

    def drop(self, task_id: str) -> bool:
        """Stops holding the task; False when it was not held."""
        try:
            self.remove_job(task_id, _STORE)
        except JobLookupError:
            return False
        return True

    # --- the loop ---------------------------------------------------------------------------

    def _process_jobs(self) -> float | None:
        try:
            if self._before_pass is not None and not self._before_pass(self):
                return self._max_wait_s if self._max_wait_s is not None else self._retry_s
            if self.state == STATE_PAUSED:  # APScheduler does not wake a paused loop; resume() does
                wait = None
            else:
                with self._jobstores_lock:
                    wait = self._fire_due()
        except LeadershipLost:
            return self._retry_s
        except Exception as error:
            self._on_error(error)
            return self._retry_s
        self._on_pass()
        if self._max_wait_s is not None:
            wait = self._max_wait_s if wait is None else min(wait, self._max_wait_s)
        return wait

    def _fire_due(self) -> float | None:
        """One pass: hands on every due instant, moves each entry on; the seconds until the next is due."""
        now = self._now()
        jobs: list[Job] = self._store.get_due_jobs(now)
        due = [_due(job, now) for job in jobs]
        if due:
            self._on_due(due)  # first: the fence and the tasks' next_run are written before the entries move
            for job, found in zip(jobs, due, strict=True):
                job._modify(next_run_time=found.next_run)
            self._store.write_moved(jobs)
        upcoming: datetime | None = self._store.get_next_run_time()
        return None if upcoming is None else max((upcoming - self._now()).total_seconds(), 0.0)

    @property
    def loop_alive(self) -> bool:
        thread = getattr(self, "_thread", None)
        return thread is not None and thread.is_alive()

    def stop_within(self, timeout_s: float) -> bool:
        """Shuts down without waiting; False when the loop is still running after ``timeout_s``.

        A loop stuck inside a pass (or a call the pass made) would hold a plain ``shutdown`` forever;
        here it is left behind, marked stopped, and the caller learns that it is stuck.
        """
        if not self.running:
            return not self.loop_alive
        stopper = threading.Thread(target=self._shutdown_quietly, name="scheduler-shutdown", daemon=True)
        stopper.start()
        stopper.join(timeout_s)
        return not stopper.is_alive()

    def _shutdown_quietly(self) -> None:
        try:
            self.shutdown(wait=False)
        except Exception:  # pragma: no cover - a scheduler that cannot even stop
            log.exception("stopping the scheduler failed")


def _trigger(job: Job) -> CronTaskTrigger:
    trigger = job.trigger
    if not isinstance(trigger, CronTaskTrigger):
        raise TypeError(f"job {job.id} has an unexpected trigger {trigger!r}")
    return trigger


def _entry(job: Job) -> Entry:
    return Entry(job.id, _trigger(job).schedule, job.next_run_time.astimezone(UTC))


def _due(job: Job, now: datetime) -> Due:
    """Every instant of the job from its next run up to ``now``, and the first one after ``now``."""
    schedule = _trigger(job).schedule
    instants: list[datetime] = []
    t = job.next_run_time.astimezone(UTC)
    while t <= now:
        instants.append(t)
        t = schedule.next_after(t)
    return Due(job.id, schedule, instants, t)
