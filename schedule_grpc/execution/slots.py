"""The executions running on one replica (a slot each), and the ones it recorded lately.

Shared by the executor's dispatcher (which adds slots and stops them), its lanes (which attach the worker
process or the remote run) and its recorder (which removes them once recorded), under one lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from schedule_grpc.execution.remote_lane import RemoteRun
from schedule_grpc.execution.worker import Running
from schedule_grpc.handlers.base import Lane
from schedule_grpc.store.queue import Claimed

# How many recorded execution ids ``Slots.wait_finished`` remembers.
REMEMBERED = 10_000


@dataclass
class Slot:
    """One claimed execution on its way through a lane to the recorder."""

    claimed: Claimed
    lane: Lane
    claimed_at: float
    running: Running | None = None  # local lane, once its worker process has the assignment
    remote: RemoteRun | None = None  # remote lane
    stop_reason: str | None = None  # "cancelled" or "shutdown" once the executor stops it
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def execution_id(self) -> str:
        return self.claimed.execution.id

    @property
    def task_owner(self) -> str | None:
        return self.claimed.task.owner


class Slots:
    """The running slots by execution id, and the ids recorded lately (for ``wait_finished``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        self._slots: dict[str, Slot] = {}
        self._recorded: OrderedDict[str, None] = OrderedDict()

    def add(self, slot: Slot) -> None:
        with self._lock:
            self._slots[slot.execution_id] = slot

    def get(self, execution_id: str) -> Slot | None:
        with self._lock:
            return self._slots.get(execution_id)

    def snapshot(self) -> list[Slot]:
        with self._lock:
            return list(self._slots.values())

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._slots)

    def attach_local(self, slot: Slot, running: Running) -> bool:
        """Gives ``slot`` its worker process; whether the slot was stopped meanwhile (then kill it)."""
        with self._lock:
            slot.running = running
            return slot.stop_reason is not None

    def attach_remote(self, slot: Slot, run: RemoteRun) -> bool:
        """Gives ``slot`` its remote run; whether the slot was stopped meanwhile (then cancel it)."""
        with self._lock:
            slot.remote = run
            return slot.stop_reason is not None

    def stop(self, slot: Slot, reason: str) -> None:
        """Marks ``slot`` stopped (the first reason wins) and stops what runs it, in either lane."""
        with self._lock:
            if slot.stop_reason is None:
                slot.stop_reason = reason
            running, remote = slot.running, slot.remote
        if running is not None:
            running.kill()
        if remote is not None:
            remote.cancel()

    def finish(self, slots: Iterable[Slot]) -> None:
        """Removes recorded slots, remembers their ids and wakes whoever waits for them."""
        with self._finished:
            for slot in slots:
                self._slots.pop(slot.execution_id, None)
                slot.done.set()
                self._recorded[slot.execution_id] = None
            while len(self._recorded) > REMEMBERED:
                self._recorded.popitem(last=False)
            self._finished.notify_all()

    def wait_finished(self, execution_id: str, timeout_s: float) -> bool:
        """Waits until ``execution_id`` is recorded (or stopped) here; False after ``timeout_s``."""
        with self._finished:
            return self._finished.wait_for(lambda: execution_id in self._recorded, timeout_s)
