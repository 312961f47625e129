"""The APScheduler 3 parts the engine plugs in: executor, job store and a guarded scheduler.

One processing pass of the scheduler (``_process_jobs``) is turned into two transactions:
the executor collects the due occurrences, and when the pass asks the job store for its next run
time, the occurrences are stored first (the fence) and then every job's new next run time, in one
batch. A crash between the two only replays occurrences, which the fence ignores.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import datetime_to_utc_timestamp

from schedule_grpc.engine.trigger import CronTaskTrigger
from schedule_grpc.firing import Occurrence
from schedule_grpc.store.schedule_jobs import write_job_rows

log = logging.getLogger(__name__)


class OccurrenceBuffer:
    """The occurrences of the current pass, each with the next fire instant of its task."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Occurrence] = []
        self._next: dict[str, datetime] = {}

    def add(self, task_id: str, trigger: CronTaskTrigger, run_times: Sequence[datetime]) -> None:
        occurrences = [Occurrence(task_id, t.astimezone(UTC), trigger.expression, trigger.timezone) for t in run_times]
        with self._lock:
            self._items.extend(occurrences)
            self._next[task_id] = trigger.schedule.next_after(run_times[-1])

    def take(self) -> tuple[list[Occurrence], dict[str, datetime]]:
        with self._lock:
            items, nxt = self._items, self._next
            self._items, self._next = [], {}
        return items, nxt


class OccurrenceExecutor(BaseExecutor):  # type: ignore[misc]
    """Collects the due instants of each job instead of running a function."""

    def __init__(self, buffer: OccurrenceBuffer) -> None:
        super().__init__()
        self._buffer = buffer

    def submit_job(self, job: Job, run_times: list[datetime]) -> None:
        # No instance accounting: nothing runs here; the executor issue's workers run the rows.
        self._do_submit_job(job, run_times)

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        trigger = job.trigger
        if not isinstance(trigger, CronTaskTrigger):
            raise TypeError(f"job {job.id} has an unexpected trigger {trigger!r}")
        self._buffer.add(job.args[0], trigger, run_times)


class BatchingJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """SQLAlchemyJobStore that stores a pass's occurrences, then its job updates in one transaction."""

    def __init__(
        self,
        engine: Any,
        *,
        on_pass_end: Callable[[], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        super().__init__(engine=engine)
        self._on_pass_end = on_pass_end
        self._on_error = on_error
        self._in_pass = False
        self._updates: dict[str, Job] = {}

    def abandon_pass(self) -> None:
        """Forgets a pass that failed midway (its jobs stay due and are replayed)."""
        self._in_pass = False
        self._updates.clear()

    def get_due_jobs(self, now: datetime) -> list[Job]:
        self.abandon_pass()
        try:
            jobs: list[Job] = super().get_due_jobs(now)
        except Exception as error:  # APScheduler logs a warning and retries; make it visible too
            self._on_error(error)
            raise
        self._in_pass = True
        return jobs

    def update_job(self, job: Job) -> None:
        if self._in_pass:
            self._updates[job.id] = job
        else:
            super().update_job(job)

    def get_next_run_time(self) -> datetime | None:
        if self._in_pass:
            updates = list(self._updates.values())
            self.abandon_pass()
            self._on_pass_end()  # the occurrences first: the fence is written before the jobs move on
            write_job_rows(
                self.engine,
                self.jobs_t,
                [(j.id, datetime_to_utc_timestamp(j.next_run_time), self._state(j)) for j in updates],
            )
        result: datetime | None = super().get_next_run_time()
        return result

    def _state(self, job: Job) -> bytes:
        return pickle.dumps(job.__getstate__(), self.pickle_protocol)

    def shutdown(self) -> None:
        """The database engine belongs to the service, which disposes of it."""


class GuardedScheduler(BackgroundScheduler):  # type: ignore[misc]
    """A BackgroundScheduler whose loop survives errors and reports them.

    APScheduler 3 lets an exception from a processing pass (a job store write on a lost database)
    end its thread silently; here the pass's error is reported and the pass retried shortly.
    """

    def __init__(
        self, *, on_error: Callable[[BaseException], None], on_pass: Callable[[], None], retry_s: float, **options: Any
    ) -> None:
        super().__init__(**options)
        self._on_error = on_error
        self._on_pass = on_pass
        self._retry_s = retry_s
        self._pass_error: BaseException | None = None

    def report_error(self, error: BaseException) -> None:
        """Records an error of the current pass (also those APScheduler only logs)."""
        self._pass_error = error
        self._on_error(error)

    def _process_jobs(self) -> float | None:
        self._pass_error = None
        try:
            wait: float | None = super()._process_jobs()
        except Exception as error:
            for store in self._jobstores.values():
                if isinstance(store, BatchingJobStore):
                    store.abandon_pass()
            self.report_error(error)
            return self._retry_s
        if self._pass_error is None:
            self._on_pass()
        return wait

    @property
    def loop_alive(self) -> bool:
        thread = getattr(self, "_thread", None)
        return thread is not None and thread.is_alive()

    @property
    def lock(self) -> Any:
        """The lock a processing pass holds; holding it keeps passes out (reconciliation)."""
        return self._jobstores_lock
