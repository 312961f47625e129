"""The soft cap on what one owner's tasks may hold together: how many, and how much metadata."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from schedule_grpc.domain.errors import ResourceExhausted
from schedule_grpc.domain.models import JSON, Task
from schedule_grpc.usecases.ports import TaskWrites


def metadata_bytes(metadata: dict[str, JSON]) -> int:
    """The size a task's metadata counts for: its compact JSON, in bytes."""
    return len(json.dumps(metadata, separators=(",", ":")).encode())


class Quota:
    """What one owner's tasks may hold together (open mode: every task, owner NULL): a soft cap.

    Each replica keeps each owner's usage, read from the database at most every ``refresh_s`` and counted
    up by its own registrations, so a registration costs no extra query; registrations of one owner on
    several replicas at once may pass a bound by what the others added within ``refresh_s``.
    """

    MAX_OWNERS = 10_000

    def __init__(self, max_tasks: int, max_metadata_bytes: int, *, refresh_s: float = 10.0) -> None:
        self.max_tasks = max_tasks
        self.max_metadata_bytes = max_metadata_bytes
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._usage: OrderedDict[str | None, tuple[int, int, float]] = OrderedDict()  # count, bytes, read at

    def admit(self, owner: str | None, new_bytes: int, read: Callable[[str | None], tuple[int, int]]) -> None:
        """ResourceExhausted when one more task of ``new_bytes`` metadata would pass a bound."""
        now = time.monotonic()
        with self._lock:
            cached = self._usage.get(owner)
        if cached is None or now - cached[2] > self._refresh_s:
            count, used = read(owner)
            with self._lock:
                self._usage[owner] = (count, used, now)
                self._usage.move_to_end(owner)
                while len(self._usage) > self.MAX_OWNERS:
                    self._usage.popitem(last=False)
        else:
            count, used, _ = cached
        who = f"caller {owner!r}" if owner is not None else "the service (open mode)"
        if count + 1 > self.max_tasks:
            raise ResourceExhausted(
                f"{who} owns {count} tasks, the most allowed (SCHEDULE_MAX_TASKS_PER_CALLER); unregister some first",
                retry_after_s=60.0,
            )
        if used + new_bytes > self.max_metadata_bytes:
            raise ResourceExhausted(
                f"{who}'s tasks hold {used} bytes of metadata; {new_bytes} more would pass the "
                f"{self.max_metadata_bytes} allowed (SCHEDULE_MAX_METADATA_BYTES_PER_CALLER)",
                retry_after_s=60.0,
            )

    def added(self, owner: str | None, new_bytes: int) -> None:
        with self._lock:
            cached = self._usage.get(owner)
            if cached is not None:
                self._usage[owner] = (cached[0] + 1, cached[1] + new_bytes, cached[2])

    def forget(self, owner: str | None) -> None:
        """The owner's usage changed (a task was deleted): read it again next time."""
        with self._lock:
            self._usage.pop(owner, None)


def insert_within(quota: Quota | None, tasks: TaskWrites, task: Task) -> Task:
    """Stores the task within its owner's quota: ResourceExhausted past it, AlreadyExists for a taken name."""
    if quota is None:
        return tasks.insert(task)
    size = metadata_bytes(task.metadata)
    quota.admit(task.owner, size, tasks.usage)
    stored = tasks.insert(task)
    quota.added(task.owner, size)
    return stored
