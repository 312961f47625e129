"""The observing parts of one replica, started and stopped together: metrics, the execution-event counter,
the event feed and its watches (built in ``schedule_grpc.app``), and the HTTP server for /metrics and /status."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from schedule_grpc.domain.caller import Caller, Role
from schedule_grpc.domain.models import Execution, ExecutionStatus
from schedule_grpc.handlers.maintenance import TASK_NAME
from schedule_grpc.observability.metrics import EventCounter, Metrics
from schedule_grpc.observability.status_page import StatusPage
from schedule_grpc.observability.watch import EventFeed, Watches
from schedule_grpc.observability.web import ObservabilityServer

log = logging.getLogger(__name__)

LISTENER_READY_S = 5.0
# result key of the retention task -> table, for schedule_retention_deleted_rows
_DELETED = {
    "task_executions": "deletedExecutions",
    "dead_letters": "deletedDeadLetters",
    "execution_events": "deletedEvents",
}

# The anonymous reader of /status when credentials are configured: a service that owns no task.
STATUS_PAGE_VIEWER = Caller("(status page)", Role.SERVICE)


class EventListener(Protocol):
    """Wakes the event feed on each notification and elects the replica that counts the events."""

    ready: threading.Event

    @property
    def holds_lock(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Alone:
    """The event listener of a replica with no one to hear from (SQLite: one replica, watchers poll): it
    counts the events itself."""

    holds_lock = True

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.ready.set()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class Observability:
    """Built before the API (the executor reports to ``recorded``, the interceptor counts into ``metrics``)."""

    def __init__(
        self, metrics: Metrics, feed: EventFeed, watch: Watches, counter: EventCounter, listener: EventListener
    ) -> None:
        self.metrics = metrics
        self.feed = feed
        self.watch = watch
        self.counter = counter
        self.listener = listener

    def recorded(self, execution: Execution, _seconds: float) -> None:
        """Called by this replica's executor for each execution it records: the built-in retention task's
        result says how many rows it deleted, by table (its handler runs in a worker process)."""
        if execution.task_name != TASK_NAME or execution.status is not ExecutionStatus.SUCCESS:
            return
        result = execution.result if isinstance(execution.result, dict) else {}
        for table, key in _DELETED.items():
            rows = result.get(key)
            if isinstance(rows, int) and rows > 0:
                self.metrics.retention_deleted.labels(table).inc(rows)

    @property
    def counter_active(self) -> bool:
        """Whether this replica is the one counting execution events: with SQLite there is one replica,
        and it counts; with Postgres, the holder of the counter lock."""
        return self.listener.holds_lock

    def start(self) -> None:
        self.listener.start()
        if not self.listener.ready.wait(LISTENER_READY_S):
            log.warning("event listener not connected yet; watchers poll meanwhile")
        try:
            self.counter.catch_up()  # the counting replica starts from here
        except Exception:
            log.exception("could not start counting execution events")

    def end_streams(self) -> None:
        """Ends every WatchExecutions stream (first step of a shutdown)."""
        self.feed.stop()

    def stop(self) -> None:
        self.feed.stop()
        self.listener.stop()


def metrics_server(address: str, observability: Observability, page: StatusPage) -> ObservabilityServer:
    """/metrics and /status on ``address``."""
    return ObservabilityServer(
        address, observability.metrics.registry, before_scrape=observability.counter.catch_up, status_page=page.render
    )
