"""The observing parts of one replica, wired together: metrics, the event feed and watches,
retention, and the HTTP server for /metrics and /status."""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from schedule_grpc.domain.caller import Caller, Role
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.models import Execution, ExecutionStatus
from schedule_grpc.observability.metrics import DatabaseCollector, EventCounter, Metrics
from schedule_grpc.observability.status_page import StatusPage
from schedule_grpc.observability.watch import EventFeed, Watches
from schedule_grpc.observability.web import ObservabilityServer
from schedule_grpc.settings import Settings
from schedule_grpc.store.events import EVENTS_CHANNEL, EventStore
from schedule_grpc.store.notify import COUNTER_LOCK_KEY, Listener
from schedule_grpc.store.observations import ObservationStore
from schedule_grpc.store.retention import RetentionStore
from schedule_grpc.usecases.retention import TASK_NAME, Retention, RetentionPolicy
from schedule_grpc.usecases.tasks import Tasks

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


class Observability:
    """Built before the API (the retention handler and the interceptor need it), served after it."""

    def __init__(self, settings: Settings, engine: Engine, clock: Clock) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.events = EventStore(engine)
        self.observations = ObservationStore(engine)
        self.feed = EventFeed()
        self.listener = (
            Listener(engine, EVENTS_CHANNEL, self.feed.wake, lock_key=COUNTER_LOCK_KEY)
            if self.events.notifies
            else None
        )
        self.counter = EventCounter(
            self.events, self.metrics, lambda: self.counter_active, existing_tasks=self.observations.existing_tasks
        )
        self.watch = Watches(
            self.events,
            self.feed,
            poll_s=settings.watch_poll_s,
            heartbeat_s=settings.watch_heartbeat_s,
            max_streams=settings.watch_max_streams,
        )
        self.retention = Retention(
            RetentionStore(engine),
            self.events,
            RetentionPolicy.from_settings(settings),
            clock,
            on_deleted=lambda table, rows: self.metrics.retention_deleted.labels(table).inc(rows),
        )
        self.metrics.registry.register(DatabaseCollector(self.observations))
        self._clock = clock
        self.http: ObservabilityServer | None = None

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
        return self.listener.holds_lock if self.listener is not None else True

    def serve_http(self, tasks: Tasks) -> None:
        """Binds /metrics and /status on SCHEDULE_METRICS_ADDRESS (unless it is empty)."""
        if not self.settings.metrics_address:
            return
        # Nobody is authenticated on this port: with credentials configured, the page shows what any
        # service caller sees of others' tasks (existence, schedule, state, outcomes), never errors.
        closed = bool(self.settings.auth_tokens or self.settings.grpc_tls_client_ca_file)
        page = StatusPage(tasks, self.observations, self._clock, viewer=STATUS_PAGE_VIEWER if closed else None)
        self.http = ObservabilityServer(
            self.settings.metrics_address,
            self.metrics.registry,
            before_scrape=self.counter.catch_up,
            status_page=page.render,
        )

    def start(self) -> None:
        if self.listener is not None:
            self.listener.start()
            if not self.listener.ready.wait(LISTENER_READY_S):
                log.warning("event listener not connected yet; watchers poll meanwhile")
        try:
            self.counter.catch_up()  # the counting replica starts from here
        except Exception:
            log.exception("could not start counting execution events")
        if self.http is not None:
            self.http.start()

    def end_streams(self) -> None:
        """Ends every WatchExecutions stream (first step of a shutdown)."""
        self.feed.stop()

    def stop(self) -> None:
        self.feed.stop()
        if self.http is not None:
            self.http.stop()
        if self.listener is not None:
            self.listener.stop()
