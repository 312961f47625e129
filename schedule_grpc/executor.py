"""The executor, on every replica: claims due executions, runs each in a worker process, records the outcome.

One dispatcher thread claims rows (woken by ``wake()``, a Postgres NOTIFY, or its poll interval),
renews the leases of what runs here, notices cancellations, and recovers executions whose lease
expired (their replica died). Each claimed execution is watched by a thread of a bounded pool while
its handler runs in a worker process; the outcome, its retry or dead letter are recorded in one
transaction, and alerts go to the email queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from schedule_grpc import logs, retry, secrets
from schedule_grpc.alerts import Alerts, dead_letter_email, failure_email, reported_alerts
from schedule_grpc.clock import Clock
from schedule_grpc.handlers.base import HandlerContext
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.models import ErrorCategory, Execution, ExecutionStatus, Outcome
from schedule_grpc.runner import Attempt, replica_lost, replica_stopped, timed_out
from schedule_grpc.store.queue import Claimed, FollowUp, QueueStore, Recorded
from schedule_grpc.worker import Job, Running, WorkerPool

log = logging.getLogger(__name__)

RECOVER_BATCH = 100


@dataclass(frozen=True)
class ExecutorConfig:
    """How one replica's executor behaves."""

    owner: str
    concurrency: int = 4
    poll_interval_s: float = 0.5
    lease_s: float = 30.0
    memory_limit_mb: int = 512
    shutdown_grace_s: float = 10.0
    secrets_dir: str = ""  # where metadata's {"secretRef": ...} files are read (schedule_grpc.secrets)


@dataclass
class _Slot:
    claimed: Claimed
    running: Running | None = None
    stop_reason: str | None = None  # "cancelled" or "shutdown" once the dispatcher stops it
    done: threading.Event = field(default_factory=threading.Event)


class Executor:
    """Runs the queue's due executions on this replica."""

    def __init__(
        self,
        queue: QueueStore,
        handlers: HandlerRegistry,
        clock: Clock,
        alerts: Alerts,
        config: ExecutorConfig,
        *,
        on_recorded: Callable[[Execution, float], None] | None = None,
    ) -> None:
        self._queue = queue
        self._handlers = handlers
        self._clock = clock
        self._alerts = alerts
        self._config = config
        self._on_recorded = on_recorded
        modules = sorted({type(h).__module__ for h in handlers.all()})
        self._pool = WorkerPool(config.concurrency, preload=modules)
        self._threads = ThreadPoolExecutor(config.concurrency, thread_name_prefix="execution")
        self._lease = timedelta(seconds=config.lease_s)
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch, name="executor", daemon=True)

    @property
    def owner(self) -> str:
        return self._config.owner

    def start(self) -> None:
        self._pool.start()
        self._dispatcher.start()
        log.info("executor started", extra={"owner": self.owner, "concurrency": self._config.concurrency})

    def wake(self) -> None:
        """Something may be due: claim now instead of at the next poll."""
        self._wakeup.set()

    def wait_finished(self, execution_id: str, timeout_s: float) -> None:
        """Returns when this replica records ``execution_id``, or after ``timeout_s`` at most."""
        with self._finished:
            self._finished.wait(timeout_s)

    def cancel(self, execution_id: str) -> None:
        """Stops the handler of ``execution_id`` at once if it runs here (its row is already cancelled)."""
        with self._lock:
            slot = self._slots.get(execution_id)
        if slot is not None:
            self._stop(slot, "cancelled")

    def stop(self) -> None:
        """Stops claiming; lets running handlers finish for the grace period, then stops and records them."""
        self._stopping.set()
        self._wakeup.set()
        self._dispatcher.join(10)
        deadline = time.monotonic() + self._config.shutdown_grace_s
        for slot in self._snapshot():
            slot.done.wait(max(deadline - time.monotonic(), 0))
        for slot in self._snapshot():
            self._stop(slot, "shutdown")
        self._threads.shutdown(wait=True)
        self._pool.stop()
        log.info("executor stopped", extra={"owner": self.owner})

    # --- the dispatcher -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Claims whenever woken (a queued execution, a finished one, a NOTIFY) or at the poll interval.

        The housekeeping queries (lease renewal, cancellations made on other replicas, recovery of
        expired leases) run on their own intervals, not on every wake-up: under a burst each finished
        execution wakes the loop, and four queries per execution halved the throughput.
        """
        last_renewal = last_housekeeping = time.monotonic()
        while not self._stopping.is_set():
            full = False
            try:
                full = self._claim_and_start()
                now = time.monotonic()
                if now - last_renewal >= self._config.lease_s / 3:
                    self._renew()  # also notices cancellations
                    last_renewal = now
                elif now - last_housekeeping >= self._config.poll_interval_s:
                    self._notice_cancellations()
                if now - last_housekeeping >= self._config.poll_interval_s:
                    self._recover()
                    last_housekeeping = now
            except Exception:
                log.exception("executor pass failed; retrying at the next poll")
            # With every slot busy, a finishing execution wakes the loop: no need to ask when the next is due.
            self._wakeup.wait(self._config.poll_interval_s if full else self._sleep_s())
            self._wakeup.clear()

    def _sleep_s(self) -> float:
        poll = self._config.poll_interval_s
        try:
            due = self._queue.next_due()
        except Exception:
            return poll
        if due is None:
            return poll
        return min(max((due - self._clock.now()).total_seconds(), 0.005), poll)

    def _claim_and_start(self) -> bool:
        """Claims what is due, up to the free slots; whether every slot is now busy."""
        with self._lock:
            free = self._config.concurrency - len(self._slots)
        if free <= 0:
            return True
        now = self._clock.now()
        claimed_now = self._queue.claim(owner=self.owner, now=now, lease=self._lease, limit=free)
        for claimed in claimed_now:
            slot = _Slot(claimed)
            with self._lock:
                self._slots[claimed.execution.id] = slot
            self._threads.submit(self._execute, slot, time.perf_counter())
        return len(claimed_now) == free

    def _renew(self) -> None:
        ids = [s.claimed.execution.id for s in self._snapshot()]
        kept = self._queue.renew(owner=self.owner, ids=ids, now=self._clock.now(), lease=self._lease)
        self._stop_missing(ids, kept)

    def _notice_cancellations(self) -> None:
        ids = [s.claimed.execution.id for s in self._snapshot()]
        if ids:
            self._stop_missing(ids, self._queue.still_running(owner=self.owner, ids=ids))

    def _stop_missing(self, ids: list[str], kept: set[str]) -> None:
        for execution_id in set(ids) - kept:
            with self._lock:
                slot = self._slots.get(execution_id)
            if slot is not None and not slot.done.is_set():
                self._stop(slot, "cancelled")

    def _recover(self) -> None:
        recovered = self._queue.recover(
            now=self._clock.now(),
            limit=RECOVER_BATCH,
            decide=self._follow_up,
            outcome=lambda x: replica_lost(x.lease_owner, x.lease_expires_at).at(self._clock.now()),
        )
        for recorded in recovered:
            log.warning(
                "recovered an execution whose replica stopped",
                extra={"execution_id": recorded.execution.id, "task": recorded.execution.task_name},
            )
            self._after(recorded, None)

    # --- one execution ------------------------------------------------------------------------

    def _execute(self, slot: _Slot, claimed_at: float) -> None:
        claimed = slot.claimed
        execution = claimed.execution
        with logs.bind(task_id=execution.task_id, task_name=execution.task_name, execution_id=execution.id):
            self._execute_bound(slot, claimed_at)

    def _execute_bound(self, slot: _Slot, claimed_at: float) -> None:
        claimed = slot.claimed
        try:
            attempt = self._run(slot)
            if slot.stop_reason == "cancelled":
                return  # the row says cancelled already; nothing to record
            if slot.stop_reason == "shutdown":
                attempt = replica_stopped(self.owner)
            # No stored error, result or traceback keeps a secret of the task's metadata.
            outcome = secrets.scrub_outcome(
                attempt.at(self._clock.now()), claimed.task.metadata, self._config.secrets_dir
            )
            recorded = self._queue.record(claimed, self.owner, outcome, self._follow_up(claimed, outcome))
            if recorded is not None:
                done = recorded.execution
                log.info(
                    "execution finished",
                    extra={
                        "status": done.status.value,
                        "trigger": done.trigger.value,
                        "attempt": done.attempt,
                        "duration_ms": done.duration_ms,
                        "error_category": done.error_category.value if done.error_category else None,
                    },
                )
                if self._on_recorded is not None:
                    self._on_recorded(recorded.execution, time.perf_counter() - claimed_at)
                self._after(recorded, claimed)
        except Exception:
            log.exception("recording an execution failed", extra={"execution_id": claimed.execution.id})
        finally:
            slot.done.set()
            with self._finished:
                self._slots.pop(claimed.execution.id, None)
                self._finished.notify_all()
            self._wakeup.set()  # a slot is free (and an overlapping execution may start)

    def _run(self, slot: _Slot) -> Attempt:
        execution, task = slot.claimed.execution, slot.claimed.task
        handler = self._handlers.get(task.handler)
        if handler is None:
            return Attempt(
                status=ExecutionStatus.FAILED,
                error=f"unknown handler {task.handler!r} on replica {self.owner}",
                error_category=ErrorCategory.LOGIC,
            )
        try:
            metadata = secrets.resolve(task.metadata, self._config.secrets_dir)
        except secrets.SecretUnavailable as error:
            return Attempt(status=ExecutionStatus.FAILED, error=str(error), error_category=error.category)
        context = HandlerContext(
            execution_id=execution.id,
            task_id=task.id,
            task_name=task.name,
            scheduled_for=execution.scheduled_for,
            attempt=execution.attempt,
            metadata=metadata,
            timeout=task.timeout,
        )
        memory = task.memory_limit_mb or self._config.memory_limit_mb
        try:
            running = self._pool.run(Job(handler, context, memory))
        except Exception as error:
            return Attempt(
                status=ExecutionStatus.FAILED,
                error=f"the handler could not be sent to a worker process: {type(error).__name__}: {error}",
                error_category=ErrorCategory.LOGIC,
            )
        with self._lock:
            slot.running = running
            stopped = slot.stop_reason is not None
        if stopped:
            running.kill()
            return replica_stopped(self.owner)
        attempt = running.wait(task.timeout.total_seconds())
        if attempt is None:
            running.kill()
            return timed_out(task.timeout)
        return attempt

    def _stop(self, slot: _Slot, reason: str) -> None:
        with self._lock:
            if slot.stop_reason is None:
                slot.stop_reason = reason
            running = slot.running
        if running is not None:
            running.kill()

    def _follow_up(self, claimed: Claimed, outcome: Outcome) -> FollowUp:
        execution = claimed.execution
        if outcome.status is not ExecutionStatus.FAILED or not retry.retries(execution.trigger):
            return FollowUp()
        delay = retry.next_delay(claimed.task.retry_policy, execution.attempt)
        if delay is None:
            return FollowUp(dead_letter=True)
        return FollowUp(retry_at=outcome.completed_at + delay)

    def _after(self, recorded: Recorded, claimed: Claimed | None) -> None:
        execution = recorded.execution
        task = claimed.task if claimed is not None else None
        if execution.status is ExecutionStatus.SUCCESS:
            for email in reported_alerts(execution.result):
                self._alerts.send(email)
            return
        if execution.status is not ExecutionStatus.FAILED:
            return
        if task is None:
            task = self._queue.task(execution.task_id)
            if task is None:
                return
        if recorded.dead_letter_id is not None:
            self._alerts.send(dead_letter_email(execution, task, recorded.dead_letter_id))
        elif task.critical and (execution.attempt == 1 or not retry.retries(execution.trigger)):
            self._alerts.send(failure_email(execution, task))
        if recorded.retry is not None:
            log.info(
                "execution failed; retry queued",
                extra={"execution_id": execution.id, "task": execution.task_name, "retry_at": recorded.retry.due_at},
            )

    def _snapshot(self) -> list[_Slot]:
        with self._lock:
            return list(self._slots.values())
