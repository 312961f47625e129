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
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import datetime_to_utc_timestamp

from schedule_grpc.scheduling.firing import Occurrence
from schedule_grpc.scheduling.trigger import CronTaskTrigger
from schedule_grpc.store.leader import LeadershipLost
from schedule_grpc.store.schedule_jobs import replace_job_rows, write_job_rows

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
    """SQLAlchemyJobStore that stores a pass's occurrences, then its job updates in one transaction.

    Inside ``batched()`` (a reconciliation) job additions, changes and removals are collected and
    written together when the block ends, instead of one transaction per job.
    """

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
        self._batch: dict[str, Job | None] | None = None  # job id -> its new state, None: removed

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Collects the job writes of the block; writes them in one transaction when it ends without error."""
        self._batch = batch = dict[str, Job | None]()
        try:
            yield
        finally:
            self._batch = None
        replace_job_rows(
            self.engine,
            self.jobs_t,
            [(i, datetime_to_utc_timestamp(j.next_run_time), self._state(j)) for i, j in batch.items() if j],
            [i for i, j in batch.items() if j is None],
        )

    def add_job(self, job: Job) -> None:
        if self._batch is not None:
            self._batch[job.id] = job  # replaces an existing job when written
        else:
            super().add_job(job)

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
        elif self._batch is not None:
            self._batch[job.id] = job
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
    """A BackgroundScheduler whose loop survives errors, reports them, and proves it is alive.

    APScheduler 3 lets an exception from a processing pass (a job store write on a lost database)
    end its thread silently; here the pass's error is reported and the pass retried shortly.

    Before each pass the loop calls ``before_pass`` (the engine renews its lease there and checks
    that its epoch is current); when it answers False the pass is skipped. The loop wakes at least
    every ``max_wait_s`` even with nothing due, so the renewal is the loop's own heartbeat. A pass
    that learns midway that leadership was lost (``LeadershipLost``) is abandoned: nothing of it is
    written.
    """

    def __init__(
        self,
        *,
        on_error: Callable[[BaseException], None],
        on_pass: Callable[[], None],
        retry_s: float,
        before_pass: Callable[[GuardedScheduler], bool] | None = None,
        max_wait_s: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._on_error = on_error
        self._on_pass = on_pass
        self._retry_s = retry_s
        self._before_pass = before_pass
        self._max_wait_s = max_wait_s
        self._pass_error: BaseException | None = None

    def report_error(self, error: BaseException) -> None:
        """Records an error of the current pass (also those APScheduler only logs)."""
        self._pass_error = error
        self._on_error(error)

    def _process_jobs(self) -> float | None:
        self._pass_error = None
        try:
            if self._before_pass is not None and not self._before_pass(self):
                return self._max_wait_s if self._max_wait_s is not None else self._retry_s
            wait: float | None = super()._process_jobs()
        except LeadershipLost:
            self._abandon_pass()
            return self._retry_s
        except Exception as error:
            self._abandon_pass()
            self.report_error(error)
            return self._retry_s
        if self._pass_error is None:
            self._on_pass()
        if self._max_wait_s is not None:
            wait = self._max_wait_s if wait is None else min(wait, self._max_wait_s)
        return wait

    def _abandon_pass(self) -> None:
        for store in self._jobstores.values():
            if isinstance(store, BatchingJobStore):
                store.abandon_pass()

    @property
    def loop_alive(self) -> bool:
        thread = getattr(self, "_thread", None)
        return thread is not None and thread.is_alive()

    def stop_within(self, timeout_s: float) -> bool:
        """Shuts down without waiting for jobs; False when the loop is still running after ``timeout_s``.

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

    def batched(self) -> AbstractContextManager[None]:
        """Job writes of the block go to the job store together (see ``BatchingJobStore.batched``)."""
        store = self._jobstores.get("default")
        return store.batched() if isinstance(store, BatchingJobStore) else nullcontext()

    @property
    def lock(self) -> Any:
        """The lock a processing pass holds; holding it keeps passes out (reconciliation)."""
        return self._jobstores_lock
