"""WatchExecutions: follows the event stream, resumable from a cursor, on any replica.

Readers wake on a database notification (Postgres, any replica's writes) or every poll interval
(SQLite, and as a safety net for a lost notification), then read what is new from the database.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from schedule_grpc.domain import caller as callers
from schedule_grpc.domain import validation
from schedule_grpc.domain.caller import Caller
from schedule_grpc.domain.errors import FailedPrecondition, ResourceExhausted
from schedule_grpc.domain.events import EventFilter, ExecutionEvent, Position
from schedule_grpc.store.events import EventStore

READ_BATCH = 200
# How soon a reader looks again when an event is committed but waits for older transactions.
SETTLE_RETRY_S = 0.05


class EventFeed:
    """A generation counter that moves whenever new events may be readable."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._stopped = False

    @property
    def generation(self) -> int:
        with self._condition:
            return self._generation

    @property
    def stopped(self) -> bool:
        return self._stopped

    def wake(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Returns when the generation moved past ``seen``, on stop, or after ``timeout`` seconds."""
        with self._condition:
            self._condition.wait_for(lambda: self._generation != seen or self._stopped, timeout=timeout)

    def stop(self) -> None:
        """Ends every watch (server shutdown)."""
        with self._condition:
            self._stopped = True
            self._condition.notify_all()


@dataclass(frozen=True)
class WatchItem:
    """One message of a watch: an event with its cursor, or a cursor alone (start, progress)."""

    cursor: str
    event: ExecutionEvent | None = None


class Watches:
    """Streams events matching a filter, from a cursor or from now."""

    def __init__(
        self, store: EventStore, feed: EventFeed, *, poll_s: float, heartbeat_s: float, max_streams: int
    ) -> None:
        self._store = store
        self._feed = feed
        self._poll_s = poll_s
        self._heartbeat_s = heartbeat_s
        self._slots = threading.BoundedSemaphore(max_streams)

    @property
    def stopping(self) -> bool:
        """True once the server ends every stream (shutdown)."""
        return self._feed.stopped

    def wake(self) -> None:
        """Makes every stream look at the database and at its caller now."""
        self._feed.wake()

    def watch(
        self, caller: Caller | None, selector: EventFilter, cursor: str, is_active: Callable[[], bool]
    ) -> Iterator[WatchItem]:
        """Validates first (errors before the first message), then yields until ``is_active`` turns false.
        A ``service`` caller sees the events of its own tasks only."""
        for name in selector.task_names:
            validation.name(name, "task_names")
        if callers.is_service(caller):
            selector = dataclasses.replace(selector, owner=callers.owner_name(caller))
        start = Position.decode(cursor)
        if start is not None and start != Position() and not self._store.exists(start):
            raise FailedPrecondition(
                "cursor: its events were deleted by the event retention; read GetRecentExecutions and watch from now",
                reason="CURSOR_EXPIRED",
            )
        return self._stream(selector, start, is_active)

    def _stream(
        self, selector: EventFilter, start: Position | None, is_active: Callable[[], bool]
    ) -> Iterator[WatchItem]:
        # Each stream holds a server thread while it lasts: a bounded number, so unary calls keep theirs.
        if not self._slots.acquire(blocking=False):
            raise ResourceExhausted("too many WatchExecutions streams on this replica", retry_after_s=self._poll_s)
        try:
            position = start if start is not None else self._store.head()
            if start is None:
                yield WatchItem(position.encode())
            last_sent = time.monotonic()
            while is_active() and not self._feed.stopped:
                seen = self._feed.generation
                head = self._store.head()
                while head > position:
                    events = self._store.read(position, until=head, selector=selector, limit=READ_BATCH)
                    for event in events:
                        yield WatchItem(event.position.encode(), event)
                        last_sent = time.monotonic()
                    position = head if len(events) < READ_BATCH else events[-1].position
                if time.monotonic() - last_sent >= self._heartbeat_s:
                    yield WatchItem(position.encode())  # progress past filtered-out events
                    last_sent = time.monotonic()
                unsettled = self._store.unsettled_after(position)
                self._feed.wait(seen, min(self._poll_s, SETTLE_RETRY_S) if unsettled else self._poll_s)
        finally:
            self._slots.release()
