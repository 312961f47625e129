"""The executor, on every replica: claims due executions, runs each in its lane, records the outcomes.

Two lanes (``handlers.base.lane_of`` says which a handler runs in):

* **remote**: handlers whose work is a network call (they declare ``lane = "remote"``) run as asyncio
  tasks on one event loop (``remote_lane``), up to ``remote_concurrency`` at once, each under its
  task's timeout, cancelled by CancelExecution and at shutdown. No process isolation: there is
  nothing to isolate in a call whose work happens elsewhere.
* **local**: handlers that run Python over data (the built-in data handlers, plugins) run in a fresh
  worker process each (``worker``), up to ``concurrency`` at once, under the memory limit: nothing a
  handler leaves behind reaches the next one, and a crash ends only its own attempt.

The remote lane's loop runs in a thread of the replica, not in a child process. Measured both ways
with ``scripts/bench_executor.py`` (1,000 webhooks due at one instant, loopback receiver, 2 shared
cores; the child-process lane is ``scripts/bench_lane_process.py``): the replica spends ~0.45-0.6 ms
of CPU per remote execution in a thread, the call included (a bare asyncio client spends ~0.2 ms on
the same POST), and the burst is over in under a second. GetTask served beside it went from p95
~1.5-3 ms idle to p95 24-37 ms during that second with the loop in a thread, and 21-33 ms with it in
a child process: no difference the noise of a shared machine lets one see, since the claims, the
records and the child itself share the same two cores. The child costs a second copy of the handlers
and their configuration, a pipe message per execution each way and a process to supervise; the
thread is the better buy. (The old executor, a worker process per webhook: p95 21-26 ms for the
15 s its burst lasted.)

Fairness (``fairness``): one task owner holds at most ``owner_share`` of a lane; a manual run
(RunTaskNow) is claimed first and may use a small headroom above the capacity, so it never waits
behind another caller's slow work.

One dispatcher thread claims due executions in batches (woken by ``wake()``, a Postgres NOTIFY, or
its poll interval), renews the leases of what runs here, notices cancellations, and recovers
executions whose lease expired (their replica died), each on its own interval. Finished attempts go
to one recorder thread, which records them in batches: one transaction per batch, each row
conditional on this replica still holding its lease, with the retry or dead letter that
``lifecycle.decide`` chose; then the alerts go to the email queue.
"""

from __future__ import annotations

import functools
import logging
import queue
import resource
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.models import ErrorCategory, Execution, ExecutionStatus
from schedule_grpc.execution import lifecycle
from schedule_grpc.execution.alerts import Alerts, dead_letter_email, failure_email, reported_alerts
from schedule_grpc.execution.fairness import Candidate, LaneLimits, Load, admit, room
from schedule_grpc.execution.remote_lane import RemoteLane, RemoteRun
from schedule_grpc.execution.runner import Attempt, handler_context, replica_lost, replica_stopped, timed_out
from schedule_grpc.execution.worker import Job, Running, WorkerPool
from schedule_grpc.handlers.base import Handler, HandlerContext, Lane, RemoteHandler, lane_of
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.observability import logs
from schedule_grpc.security import secrets
from schedule_grpc.store.queue import Claimed, Finished, QueueStore, Recorded

log = logging.getLogger(__name__)

RECOVER_BATCH = 100
# Most due executions one claim looks at, and most finished ones one transaction records.
CLAIM_BATCH = 500
RECORD_BATCH = 500
# Open files the replica needs beside the remote lane's sockets (database pool, gRPC, pipes, logs).
OTHER_FILES = 256
# How many recorded execution ids wait_finished remembers.
REMEMBERED = 10_000


@dataclass(frozen=True)
class ExecutorConfig:
    """How one replica's executor behaves."""

    owner: str
    concurrency: int = 4
    remote_concurrency: int = 1024
    owner_share: float = 0.5
    manual_headroom: int = 2
    poll_interval_s: float = 0.5
    lease_s: float = 30.0
    memory_limit_mb: int = 512
    shutdown_grace_s: float = 10.0
    secrets_dir: str = ""  # where metadata's {"secretRef": ...} files are read (schedule_grpc.security.secrets)


@dataclass
class _Slot:
    claimed: Claimed
    lane: Lane
    claimed_at: float
    running: Running | None = None  # local lane, once its worker process has the job
    remote: RemoteRun | None = None  # remote lane
    stop_reason: str | None = None  # "cancelled" or "shutdown" once the executor stops it
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def task_owner(self) -> str | None:
        return self.claimed.task.owner


class Executor:
    """Runs the queue's due executions on this replica."""

    def __init__(
        self,
        queue_store: QueueStore,
        handlers: HandlerRegistry,
        clock: Clock,
        alerts: Alerts,
        config: ExecutorConfig,
        *,
        on_recorded: Callable[[Execution, float], None] | None = None,
    ) -> None:
        self._queue = queue_store
        self._handlers = handlers
        self._clock = clock
        self._alerts = alerts
        self._config = config
        self._on_recorded = on_recorded
        local = [h for h in handlers.all() if lane_of(h) == "local"]
        remote = [cast(RemoteHandler, h) for h in handlers.all() if lane_of(h) == "remote"]
        self._limits: dict[Lane, LaneLimits] = {
            "local": LaneLimits(config.concurrency, config.manual_headroom),
            "remote": LaneLimits(config.remote_concurrency, max(config.manual_headroom, 16)),
        }
        local_threads = config.concurrency + config.manual_headroom
        self._pool = WorkerPool(config.concurrency, preload=sorted({type(h).__module__ for h in local}))
        self._threads = ThreadPoolExecutor(local_threads, thread_name_prefix="execution")
        self._remote = RemoteLane(remote)
        self._lease = timedelta(seconds=config.lease_s)
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        self._recorded_ids: OrderedDict[str, None] = OrderedDict()
        self._outcomes: queue.Queue[tuple[_Slot, Attempt | None] | None] = queue.Queue()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch, name="executor", daemon=True)
        self._recorder = threading.Thread(target=self._record_loop, name="executor-recorder", daemon=True)

    @property
    def owner(self) -> str:
        return self._config.owner

    @property
    def cancellation_check_s(self) -> float:
        """How often each replica looks for its running executions cancelled elsewhere."""
        return self._config.poll_interval_s

    def start(self) -> None:
        _allow_open_files(self._config.remote_concurrency + OTHER_FILES)
        self._pool.start()
        self._remote.start()
        self._recorder.start()
        self._dispatcher.start()
        log.info(
            "executor started",
            extra={
                "owner": self.owner,
                "concurrency": self._config.concurrency,
                "remote_concurrency": self._config.remote_concurrency,
            },
        )

    def wake(self) -> None:
        """Something may be due: claim now instead of at the next poll."""
        self._wakeup.set()

    def wait_finished(self, execution_id: str, timeout_s: float) -> bool:
        """Waits until this replica has recorded (or stopped) ``execution_id``, for ``timeout_s`` at most.

        True once it has; False after the timeout (it still runs, or another replica runs it).
        """
        with self._finished:
            return self._finished.wait_for(lambda: execution_id in self._recorded_ids, timeout_s)

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
        for slot in self._snapshot():  # the stopped remote ones are on their way to the recorder
            slot.done.wait(5)
        self._remote.stop()
        self._outcomes.put(None)
        if self._recorder.is_alive():
            self._recorder.join(30)
        self._pool.stop()
        log.info("executor stopped", extra={"owner": self.owner})

    # --- the dispatcher -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Claims whenever woken (a queued execution, a finished one, a NOTIFY) or at the poll interval.

        The housekeeping queries (lease renewal, cancellations made on other replicas, recovery of
        expired leases) run on their own intervals, not on every wake-up: under a burst each recorded
        batch wakes the loop. Nor do they run between the claims of one burst (a claim that found more
        due than it could look at is followed by another at once), unless the leases would come close
        to expiring: measured on a burst of 1,000 webhooks, a renewal of the 500 just claimed there held
        the second half back ~150 ms.
        """
        last_renewal = last_housekeeping = time.monotonic()
        while not self._stopping.is_set():
            wait = self._config.poll_interval_s
            try:
                wait = self._claim_and_start()
                now = time.monotonic()
                if wait == 0 and now - last_renewal < self._config.lease_s / 2:
                    self._wakeup.clear()
                    continue  # more of the burst is due: claim it before the housekeeping
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
            if wait > 0:
                self._wakeup.wait(wait)
            self._wakeup.clear()

    def _claim_and_start(self) -> float:
        """Claims what is due and may start now; how long to wait before the next claim."""
        poll = self._config.poll_interval_s
        loads = self._loads()
        free = room(self._limits, loads)
        if free <= 0:
            return poll  # a finishing execution wakes the loop
        limit = min(free + 64, CLAIM_BATCH)  # a few more than fit: some may belong to an owner at its share
        looked: list[int] = []

        def choose(candidates: Sequence[Candidate]) -> Sequence[Candidate]:
            looked.append(len(candidates))
            return admit(
                candidates, lane_of=self._lane_of, limits=self._limits, loads=loads, share=self._config.owner_share
            )

        now = self._clock.now()

        claimed_now = self._queue.claim(owner=self.owner, now=now, lease=self._lease, limit=limit, admit=choose)
        remote: list[tuple[_Slot, RemoteHandler, HandlerContext]] = []
        for claimed in claimed_now:
            started = self._start(claimed)
            if started is not None:
                remote.append(started)
        if remote:
            self._start_remote(remote)
        if looked and looked[0] >= limit and claimed_now:
            return 0  # more may be due: claim again at once
        if looked and looked[0] > len(claimed_now):
            return poll  # due work waits for room (an owner at its share): a finishing execution wakes the loop
        return self._sleep_s()

    def _sleep_s(self) -> float:
        poll = self._config.poll_interval_s
        try:
            due = self._queue.next_due()
        except Exception:
            return poll
        if due is None:
            return poll
        return min(max((due - self._clock.now()).total_seconds(), 0.005), poll)

    def _loads(self) -> dict[Lane, Load]:
        loads: dict[Lane, Load] = {"local": Load(), "remote": Load()}
        for slot in self._snapshot():
            loads[slot.lane].add(slot.task_owner)
        return loads

    def _lane_of(self, handler_name: str) -> Lane:
        handler = self._handlers.get(handler_name)
        return "local" if handler is None else lane_of(handler)

    def _start(self, claimed: Claimed) -> tuple[_Slot, RemoteHandler, HandlerContext] | None:
        """Starts ``claimed`` in the local lane, or records why it cannot run; what the remote lane is to
        start (the caller hands a claimed batch to it at once)."""
        handler = self._handlers.get(claimed.task.handler)
        lane: Lane = "local" if handler is None else lane_of(handler)
        slot = _Slot(claimed, lane, time.perf_counter())
        with self._lock:
            self._slots[claimed.execution.id] = slot
        if handler is None:
            unknown = Attempt(
                status=ExecutionStatus.FAILED,
                error=f"unknown handler {claimed.task.handler!r} on replica {self.owner}",
                error_category=ErrorCategory.LOGIC,
            )
            self._outcomes.put((slot, unknown))
            return None
        try:
            context = handler_context(claimed.execution, claimed.task, self._config.secrets_dir)
        except secrets.SecretUnavailable as error:
            self._outcomes.put((slot, Attempt(ExecutionStatus.FAILED, error=str(error), error_category=error.category)))
            return None
        if lane == "remote":
            return slot, cast(RemoteHandler, handler), context
        self._threads.submit(self._run_local, slot, handler, context)
        return None

    def _renew(self) -> None:
        ids = [s.claimed.execution.id for s in self._snapshot()]
        self._queue.renew(owner=self.owner, ids=ids, now=self._clock.now(), lease=self._lease)
        self._notice_cancellations(ids)

    def _notice_cancellations(self, ids: list[str] | None = None) -> None:
        """Stops the handlers whose rows were cancelled elsewhere (or taken over after a lost lease)."""
        if ids is None:
            ids = [s.claimed.execution.id for s in self._snapshot()]
        for execution_id in self._queue.taken(owner=self.owner, ids=ids):
            with self._lock:
                slot = self._slots.get(execution_id)
            if slot is not None and not slot.done.is_set():
                self._stop(slot, "cancelled")

    def _recover(self) -> None:
        recovered = self._queue.recover(
            now=self._clock.now(),
            limit=RECOVER_BATCH,
            decide=lambda claimed, outcome: lifecycle.decide(claimed.execution, claimed.task, outcome),
            outcome=lambda x: replica_lost(x.lease_owner, x.lease_expires_at).at(self._clock.now()),
        )
        for recorded in recovered:
            log.warning(
                "recovered an execution whose replica stopped",
                extra={"execution_id": recorded.execution.id, "task": recorded.execution.task_name},
            )
            self._alert(recorded)

    # --- the lanes ----------------------------------------------------------------------------

    def _start_remote(self, batch: Sequence[tuple[_Slot, RemoteHandler, HandlerContext]]) -> None:
        runs: list[RemoteRun] = []
        for slot, handler, context in batch:
            run = self._remote.prepare(handler, context, functools.partial(self._remote_done, slot))
            with self._lock:
                slot.remote = run
                stopped = slot.stop_reason is not None
            if stopped:
                run.cancel()
            runs.append(run)
        self._remote.submit(runs)

    def _remote_done(self, slot: _Slot, attempt: Attempt | None) -> None:
        self._outcomes.put((slot, attempt))

    def _run_local(self, slot: _Slot, handler: Handler, context: HandlerContext) -> None:
        execution = slot.claimed.execution
        with logs.bind(task_id=execution.task_id, task_name=execution.task_name, execution_id=execution.id):
            try:
                attempt: Attempt | None = self._watch_local(slot, handler, context)
            except Exception as error:  # pragma: no cover - a bug here must not lose the slot
                log.exception("running an execution failed")
                attempt = Attempt(
                    status=ExecutionStatus.FAILED,
                    error=f"{type(error).__name__}: {error}",
                    error_category=ErrorCategory.LOGIC,
                )
        self._outcomes.put((slot, attempt))

    def _watch_local(self, slot: _Slot, handler: Handler, context: HandlerContext) -> Attempt | None:
        task = slot.claimed.task
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
            return None
        attempt = running.wait(task.timeout.total_seconds())
        if attempt is None:
            running.kill()
            return timed_out(task.timeout)
        return attempt

    def _stop(self, slot: _Slot, reason: str) -> None:
        with self._lock:
            if slot.stop_reason is None:
                slot.stop_reason = reason
            running, remote = slot.running, slot.remote
        if running is not None:
            running.kill()
        if remote is not None:
            remote.cancel()

    # --- the recorder -------------------------------------------------------------------------

    def _record_loop(self) -> None:
        """Records finished attempts in batches: what arrived while the previous batch was written."""
        while True:
            item = self._outcomes.get()
            if item is None:
                return
            batch = [item]
            closing = False
            while len(batch) < RECORD_BATCH:
                try:
                    more = self._outcomes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                batch.append(more)
            self._record_batch(batch)
            if closing:
                return

    def _record_batch(self, batch: list[tuple[_Slot, Attempt | None]]) -> None:
        finished: list[tuple[_Slot, Finished]] = []
        for slot, attempt in batch:
            if slot.stop_reason == "cancelled":
                continue  # the row says cancelled already; nothing to record
            if slot.stop_reason == "shutdown" or attempt is None:
                attempt = replica_stopped(self.owner)
            claimed = slot.claimed
            # No stored error, result or traceback keeps a secret of the task's metadata.
            outcome = secrets.scrub_outcome(
                attempt.at(self._clock.now()), claimed.task.metadata, self._config.secrets_dir
            )
            finished.append(
                (slot, Finished(claimed, outcome, lifecycle.decide(claimed.execution, claimed.task, outcome)))
            )

        results = self._write([f for _, f in finished])
        for (slot, _), recorded in zip(finished, results, strict=True):
            if recorded is not None:
                self._recorded(slot, recorded)
        with self._finished:
            for slot, _ in batch:
                execution_id = slot.claimed.execution.id
                self._slots.pop(execution_id, None)
                slot.done.set()
                self._recorded_ids[execution_id] = None
            while len(self._recorded_ids) > REMEMBERED:
                self._recorded_ids.popitem(last=False)
            self._finished.notify_all()
        self._wakeup.set()  # room in a lane (and an overlapping execution may start)

    def _write(self, finished: list[Finished]) -> list[Recorded | None]:
        """One transaction for the batch; should it fail, each on its own, so one bad row loses only itself."""
        try:
            return self._queue.record(self.owner, finished)
        except Exception:
            if len(finished) == 1:
                log.exception("recording an execution failed", extra={"execution_id": finished[0].claimed.execution.id})
                return [None]
        results: list[Recorded | None] = []
        for one in finished:
            try:
                results += self._queue.record(self.owner, [one])
            except Exception:
                log.exception("recording an execution failed", extra={"execution_id": one.claimed.execution.id})
                results.append(None)
        return results

    def _recorded(self, slot: _Slot, recorded: Recorded) -> None:
        done = recorded.execution
        with logs.bind(task_id=done.task_id, task_name=done.task_name, execution_id=done.id):
            log.info(
                "execution finished",
                extra={
                    "status": done.status.value,
                    "trigger": done.trigger.value,
                    "attempt": done.attempt,
                    "duration_ms": done.duration_ms,
                    "error_category": done.error_category.value if done.error_category else None,
                    "lane": slot.lane,
                },
            )
            try:
                if self._on_recorded is not None:
                    self._on_recorded(done, time.perf_counter() - slot.claimed_at)
                self._alert(recorded)
            except Exception:
                log.exception("after recording an execution")

    def _alert(self, recorded: Recorded) -> None:
        """Sends the alerts the decision named (the email queue sends them off this thread)."""
        execution, task = recorded.execution, recorded.task
        for alert in recorded.decision.alerts:
            if alert == "reported":
                for email in reported_alerts(execution.result):
                    self._alerts.send(email)
            elif alert == "failure":
                self._alerts.send(failure_email(execution, task))
            elif alert == "dead_letter" and recorded.dead_letter_id is not None:
                self._alerts.send(dead_letter_email(execution, task, recorded.dead_letter_id))
        if recorded.retry is not None:
            log.info(
                "execution failed; retry queued",
                extra={"execution_id": execution.id, "task": execution.task_name, "retry_at": recorded.retry.due_at},
            )

    def _snapshot(self) -> list[_Slot]:
        with self._lock:
            return list(self._slots.values())


def _allow_open_files(wanted: int) -> None:
    """Raises this process's soft limit on open files towards ``wanted`` (each remote call holds a socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "the open-files limit is below what the remote lane may use; calls past it fail as network errors",
            extra={"limit": target, "wanted": wanted},
        )
