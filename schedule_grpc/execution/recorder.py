"""The executor's recorder: one thread that records finished attempts in batches, then logs and alerts.

One transaction per batch (what arrived while the previous batch was written), each row conditional on
this replica still holding its lease, with the retry or dead letter that ``lifecycle.decide`` chose; then
the alerts go to the email queue. Should a batch fail, each of its rows is recorded on its own, so one bad
row loses only itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from schedule_grpc.domain import lifecycle
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.models import Execution
from schedule_grpc.execution.alerts import Alerts, dead_letter_email, failure_email, reported_alerts
from schedule_grpc.execution.runner import Attempt, replica_stopped
from schedule_grpc.execution.slots import Slot, Slots
from schedule_grpc.observability import logs
from schedule_grpc.security import secrets
from schedule_grpc.store.queue import Finished, QueueStore, Recorded

log = logging.getLogger(__name__)

# Most finished executions one transaction records.
RECORD_BATCH = 500


@dataclass(frozen=True)
class RecorderConfig:
    owner: str  # the replica's lease owner name
    secrets_dir: str  # where metadata's secret references are read (to scrub them from outcomes)


class Recorder:
    """Records what the lanes finished; ``on_room()`` is called after each batch (a lane has room again)."""

    def __init__(
        self,
        queue_store: QueueStore,
        slots: Slots,
        clock: Clock,
        alerts: Alerts,
        config: RecorderConfig,
        *,
        on_room: Callable[[], None],
        on_recorded: Callable[[Execution, float], None] | None = None,
    ) -> None:
        self._queue = queue_store
        self._slots = slots
        self._clock = clock
        self._alerts = alerts
        self._config = config
        self._on_room = on_room
        self._on_recorded = on_recorded
        # What the lanes finished and the thread has not taken yet. ``put`` runs on the remote lane's loop once
        # per execution, so it only appends, and wakes the thread only when it sleeps: a ``queue.Queue`` took a
        # lock (shared with this thread) and notified on every outcome (~1 us each on the loop, against ~0.05).
        self._outcomes: deque[tuple[Slot, Attempt | None]] = deque()
        self._arrived = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="executor-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, slot: Slot, attempt: Attempt | None) -> None:
        """An attempt ended (None: stopped before it could say how)."""
        self._outcomes.append((slot, attempt))
        if not self._arrived.is_set():  # the thread clears it before it takes what arrived
            self._arrived.set()

    def close(self) -> None:
        """Records what is queued, then ends the thread."""
        self._closing = True
        self._arrived.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def alert(self, recorded: Recorded) -> None:
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

    def _loop(self) -> None:
        outcomes = self._outcomes
        while True:
            self._arrived.wait()
            self._arrived.clear()  # before taking: what arrives from now on sets it again
            closing = self._closing
            while outcomes:
                batch = [outcomes.popleft() for _ in range(min(len(outcomes), RECORD_BATCH))]
                self._record(batch)
            if closing:
                return

    def _record(self, batch: list[tuple[Slot, Attempt | None]]) -> None:
        finished: list[tuple[Slot, Finished]] = []
        for slot, attempt in batch:
            if slot.stop_reason == "cancelled":
                continue  # the row says cancelled already; nothing to record
            if slot.stop_reason == "shutdown" or attempt is None:
                attempt = replica_stopped(self._config.owner)
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
                self._after(slot, recorded)
        self._slots.finish(slot for slot, _ in batch)
        self._on_room()  # room in a lane (and an overlapping execution may start)

    def _write(self, finished: list[Finished]) -> list[Recorded | None]:
        owner = self._config.owner
        try:
            return self._queue.record(owner, finished)
        except Exception:
            if len(finished) == 1:
                log.exception("recording an execution failed", extra={"execution_id": finished[0].claimed.execution.id})
                return [None]
        results: list[Recorded | None] = []
        for one in finished:
            try:
                results += self._queue.record(owner, [one])
            except Exception:
                log.exception("recording an execution failed", extra={"execution_id": one.claimed.execution.id})
                results.append(None)
        return results

    def _after(self, slot: Slot, recorded: Recorded) -> None:
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
                self.alert(recorded)
            except Exception:
                log.exception("after recording an execution")
