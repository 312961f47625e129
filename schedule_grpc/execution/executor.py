"""The executor, on every replica: claims due executions, runs each in its lane, records the outcomes.

Two lanes (``handlers.base.lane_of`` says which a handler runs in):

* **remote**: handlers whose work is a network call (they declare ``lane = "remote"``) run as asyncio
  tasks on one event loop (``remote_lane``), up to ``remote_concurrency`` at once, each under its
  task's timeout, cancelled by CancelExecution and at shutdown. No process isolation: there is
  nothing to isolate in a call whose work happens elsewhere.
* **local**: handlers that run Python over data (the built-in data handlers, plugins) run in a fresh
  worker process each (``worker``), up to ``concurrency`` at once, under the memory limit: nothing a
  handler leaves behind reaches the next one, and a crash ends only its own attempt.

Why the remote lane's loop runs in a thread of the replica and not in a child process: see ``remote_lane``.

Fairness (``domain.fairness``): one task owner holds at most ``owner_share`` of a lane; a manual run
(RunTaskNow) is claimed first and may use a small headroom above the capacity, so it never waits
behind another caller's slow work.

One dispatcher thread claims due executions in batches (woken by ``wake()``, a Postgres NOTIFY, or
its poll interval), holds what it claimed ahead of its instant (the fire lead) and starts it then,
renews the leases of what runs here, notices cancellations, and recovers
executions whose lease expired (their replica died), each on its own interval. Finished attempts go
to the recorder (``recorder``), which records them in batches. The running executions are ``slots``;
the local lane is ``local_lane``, the remote one ``remote_lane``.

What is left here (~340 lines) is the dispatcher: its loop, the claim, the housekeeping on their intervals
and the hand-over to the lanes share its timing, and read best in one place.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from schedule_grpc.domain import lifecycle
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.fairness import Candidate, LaneLimits, Load, admit, room
from schedule_grpc.domain.models import ErrorCategory, Execution, ExecutionStatus
from schedule_grpc.execution.alerts import Alerts
from schedule_grpc.execution.local_lane import LocalLane
from schedule_grpc.execution.recorder import Recorder, RecorderConfig
from schedule_grpc.execution.remote_lane import RemoteLane, RemoteRun
from schedule_grpc.execution.runner import Attempt, handler_context, replica_lost
from schedule_grpc.execution.slots import Slot, Slots
from schedule_grpc.handlers.base import HandlerContext, Lane, RemoteHandler, lane_of
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.security import secrets
from schedule_grpc.store.queue import Claimed, QueueStore

log = logging.getLogger(__name__)

RECOVER_BATCH = 100
# Held remote calls are begun this long before their instant and released on the lane's loop at it, so that
# the statement starting them and the hand-over are done by then (~70 ms for 1,000 on 2 shared cores).
ARM = timedelta(milliseconds=100)
ZERO = timedelta(0)
# Most due executions one claim looks at.
CLAIM_BATCH = 500
# Open files the replica needs beside the remote lane's sockets (database pool, gRPC, pipes, logs).
OTHER_FILES = 256


@dataclass(frozen=True)
class ExecutorConfig:
    """How one replica's executor behaves."""

    owner: str
    concurrency: int = 4
    remote_concurrency: int = 1024
    owner_share: float = 0.5
    manual_headroom: int = 2
    poll_interval_s: float = 0.5
    lead_s: float = 0.0  # how far ahead of their instant executions are claimed (and held until it)
    lease_s: float = 30.0
    memory_limit_mb: int = 512
    shutdown_grace_s: float = 10.0
    secrets_dir: str = ""  # where metadata's {"secretRef": ...} files are read (schedule_grpc.security.secrets)


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
        self._config = config
        self._limits: dict[Lane, LaneLimits] = {
            "local": LaneLimits(config.concurrency, config.manual_headroom),
            "remote": LaneLimits(config.remote_concurrency, max(config.manual_headroom, 16)),
        }
        self._lease = timedelta(seconds=config.lease_s)
        # Held executions are not renewed: the lead is kept well inside the lease (Settings.fire_lead_used_s).
        self._lead = timedelta(seconds=config.lead_s)
        self._held: list[Claimed] = []  # claimed ahead of their instant, by due time; the dispatcher's own
        self._slots = Slots()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._recorder = Recorder(
            queue_store,
            self._slots,
            clock,
            alerts,
            RecorderConfig(config.owner, config.secrets_dir),
            on_room=self._wakeup.set,
            on_recorded=on_recorded,
        )
        self._local = LocalLane(
            [h for h in handlers.all() if lane_of(h) == "local"],
            self._slots,
            concurrency=config.concurrency,
            headroom=config.manual_headroom,
            memory_limit_mb=config.memory_limit_mb,
            done=self._recorder.put,
        )
        self._remote = RemoteLane([cast(RemoteHandler, h) for h in handlers.all() if lane_of(h) == "remote"])
        self._dispatcher = threading.Thread(target=self._dispatch, name="executor", daemon=True)

    @property
    def owner(self) -> str:
        return self._config.owner

    def start(self) -> None:
        _allow_open_files(self._config.remote_concurrency + OTHER_FILES)
        self._local.start()
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
        return self._slots.wait_finished(execution_id, timeout_s)

    def cancel(self, execution_id: str) -> None:
        """Stops the handler of ``execution_id`` at once if it runs here (its row is already cancelled)."""
        slot = self._slots.get(execution_id)
        if slot is not None:
            self._slots.stop(slot, "cancelled")

    def stop(self) -> None:
        """Stops claiming; lets running handlers finish for the grace period, then stops and records them."""
        self._stopping.set()
        self._wakeup.set()
        self._dispatcher.join(10)
        deadline = time.monotonic() + self._config.shutdown_grace_s
        for slot in self._slots.snapshot():
            slot.done.wait(max(deadline - time.monotonic(), 0))
        for slot in self._slots.snapshot():
            self._slots.stop(slot, "shutdown")
        self._local.drain()
        for slot in self._slots.snapshot():  # the stopped remote ones are on their way to the recorder
            slot.done.wait(5)
        self._remote.stop()
        self._recorder.close()
        self._local.stop()
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
        self._release_held()

    def _claim_and_start(self) -> float:
        """Claims what is due and may start now; how long to wait before the next claim."""
        poll = self._config.poll_interval_s
        self._begin_held()
        loads = self._loads()
        free = room(self._limits, loads)
        if free <= 0:
            return self._until_held(poll)  # a finishing execution wakes the loop
        limit = min(free + 64, CLAIM_BATCH)  # a few more than fit: some may belong to an owner at its share
        looked: list[int] = []

        def choose(candidates: Sequence[Candidate]) -> Sequence[Candidate]:
            looked.append(len(candidates))
            return admit(
                candidates, lane_of=self._lane_of, limits=self._limits, loads=loads, share=self._config.owner_share
            )

        now = self._clock.now()

        claimed_now = self._queue.claim(
            owner=self.owner, now=now, lease=self._lease, limit=limit, admit=choose, until=now + self._lead
        )
        held = [c for c in claimed_now if c.execution.status is ExecutionStatus.PENDING]
        if held:
            self._held = sorted([*self._held, *held], key=self._begins_at)
        self._start_all([c for c in claimed_now if c.execution.status is not ExecutionStatus.PENDING])
        if looked and looked[0] >= limit and claimed_now:
            return 0  # more may be due: claim again at once
        if looked and looked[0] > len(claimed_now):
            return self._until_held(poll)  # due work waits for room (an owner at its share): a finish wakes the loop
        return self._until_held(self._sleep_s())

    def _start_all(self, claimed: Sequence[Claimed]) -> None:
        remote: list[tuple[Slot, RemoteHandler, HandlerContext]] = []
        for one in claimed:
            started = self._start(one)
            if started is not None:
                remote.append(started)
        if remote:
            self._start_remote(remote)

    def _sleep_s(self) -> float:
        poll = self._config.poll_interval_s
        now = self._clock.now()
        try:
            due = self._queue.next_due(now)
        except Exception:
            return poll
        if due is None:
            return poll
        return min(max((due - self._lead - now).total_seconds(), 0.005), poll)

    # --- held executions: claimed ahead of their instant ------------------------------------------

    def _begin_held(self) -> None:
        """Starts the held executions whose instant has come (remote calls: that will come within ``ARM``),
        unless they were cancelled meanwhile."""
        now = self._clock.now()
        count = 0  # held is in the order they begin
        while count < len(self._held) and self._begins_at(self._held[count]) <= now:
            count += 1
        if not count:
            return
        due, self._held = self._held[:count], self._held[count:]
        try:
            begun = self._queue.begin(owner=self.owner, ids=[c.execution.id for c in due], now=now, lease=self._lease)
        except Exception:
            self._held = sorted([*due, *self._held], key=self._begins_at)  # tried again at the next pass
            raise
        running, expires = ExecutionStatus.RUNNING, now + self._lease
        started = [
            Claimed(
                dataclasses.replace(
                    c.execution, status=running, started_at=max(c.execution.due_at, now), lease_expires_at=expires
                ),
                c.task,
            )
            for c in due
            if c.execution.id in begun
        ]
        self._start_all(started)
        if len(started) < len(due):
            log.info("held executions were cancelled before their instant", extra={"count": len(due) - len(started)})
        if started:  # their tasks' last_run, once the calls are on their way
            self._queue.started({c.task.id for c in started}, max(c.execution.started_at or now for c in started))

    def _begins_at(self, claimed: Claimed) -> datetime:
        """When a held execution is begun: at its instant, a remote call ``ARM`` before it."""
        remote = self._lane_of(claimed.task.handler) == "remote"
        return claimed.execution.due_at - (min(ARM, self._lead) if remote else ZERO)

    def _until_held(self, wait: float) -> float:
        """``wait``, or less when a held execution's instant comes sooner."""
        if not self._held:
            return wait
        until = (self._begins_at(self._held[0]) - self._clock.now()).total_seconds()
        return min(wait, max(until, 0.001))

    def _release_held(self) -> None:
        held, self._held = self._held, []
        try:
            self._queue.release(owner=self.owner, ids=[c.execution.id for c in held])
        except Exception:
            log.exception("could not release the held executions; they are claimed again once their lease expires")

    def _loads(self) -> dict[Lane, Load]:
        loads: dict[Lane, Load] = {"local": Load(), "remote": Load()}
        for slot in self._slots.snapshot():
            loads[slot.lane].add(slot.task_owner)
        for claimed in self._held:
            loads[self._lane_of(claimed.task.handler)].add(claimed.task.owner)
        return loads

    def _lane_of(self, handler_name: str) -> Lane:
        handler = self._handlers.get(handler_name)
        return "local" if handler is None else lane_of(handler)

    def _start(self, claimed: Claimed) -> tuple[Slot, RemoteHandler, HandlerContext] | None:
        """Starts ``claimed`` in the local lane, or records why it cannot run; what the remote lane is to
        start (the caller hands a claimed batch to it at once)."""
        handler = self._handlers.get(claimed.task.handler)
        lane: Lane = "local" if handler is None else lane_of(handler)
        slot = Slot(claimed, lane, time.perf_counter() + self._ahead_s(claimed))
        self._slots.add(slot)
        if handler is None:
            unknown = Attempt(
                status=ExecutionStatus.FAILED,
                error=f"unknown handler {claimed.task.handler!r} on replica {self.owner}",
                error_category=ErrorCategory.LOGIC,
            )
            self._recorder.put(slot, unknown)
            return None
        try:
            context = handler_context(claimed.execution, claimed.task, self._config.secrets_dir)
        except secrets.SecretUnavailable as error:
            self._recorder.put(slot, Attempt(ExecutionStatus.FAILED, error=str(error), error_category=error.category))
            return None
        if lane == "remote":
            return slot, cast(RemoteHandler, handler), context
        self._local.submit(slot, handler, context)
        return None

    def _renew(self) -> None:
        ids = self._slots.ids()
        self._queue.renew(owner=self.owner, ids=ids, now=self._clock.now(), lease=self._lease)
        self._notice_cancellations(ids)

    def _notice_cancellations(self, ids: list[str] | None = None) -> None:
        """Stops the handlers whose rows were cancelled elsewhere (or taken over after a lost lease)."""
        if ids is None:
            ids = self._slots.ids()
        for execution_id in self._queue.taken(owner=self.owner, ids=ids):
            slot = self._slots.get(execution_id)
            if slot is not None and not slot.done.is_set():
                self._slots.stop(slot, "cancelled")

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
            self._recorder.alert(recorded)

    # --- the remote lane -------------------------------------------------------------------------

    def _start_remote(self, batch: Sequence[tuple[Slot, RemoteHandler, HandlerContext]]) -> None:
        runs: dict[float, list[RemoteRun]] = {}
        for slot, handler, context in batch:
            run = self._remote.prepare(handler, context, functools.partial(self._recorder.put, slot))
            if self._slots.attach_remote(slot, run):
                run.cancel()
            runs.setdefault(self._ahead_s(slot.claimed), []).append(run)
        for ahead_s, released in runs.items():
            self._remote.submit(released, delay_s=ahead_s)

    def _ahead_s(self, claimed: Claimed) -> float:
        """How long before its start (0 once due) an execution is handed to its lane (see ``ARM``)."""
        start = claimed.execution.started_at
        return 0.0 if start is None else max((start - self._clock.now()).total_seconds(), 0.0)


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
