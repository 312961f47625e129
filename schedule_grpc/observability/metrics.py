"""Every Prometheus metric of the service, defined in one place.

Three sources, chosen so that summing a counter over replicas counts each thing once:

* RPC counters and latency: each replica counts the calls it served (api/metrics.py).
* Execution counters and histograms: counted from the execution event stream (execution_events,
  written by database triggers). Every replica could read every event, so exactly ONE replica
  counts them: the holder of a Postgres advisory lock (store/notify.py; with SQLite there is one
  replica). It starts counting at the events committed after it took the lock; if it dies, the
  next holder takes over from its own start. Non-holders export the families with no samples.
  Catch-up happens at scrape time, so a scrape always includes what was committed before it.
* Gauges of shared state (dead-letter size, running and pending executions, the leader, the oldest
  execution kept) are queried from the database at scrape time; every replica reports the same
  value, so aggregate them with max(), not sum().
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schedule_grpc.domain.errors import ScheduleError
from schedule_grpc.domain.events import EventFilter, EventKind, ExecutionEvent, Position
from schedule_grpc.domain.models import Trigger
from schedule_grpc.store.events import EventStore
from schedule_grpc.store.observations import ObservationStore

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_OUTCOME = {EventKind.SUCCEEDED: "success", EventKind.FAILED: "failed", EventKind.CANCELLED: "cancelled"}
_TASK_LABELLED = frozenset({*_OUTCOME, EventKind.MISSED, EventKind.SKIPPED, EventKind.DEAD_LETTERED})
READ_BATCH = 1000


class Metrics:
    """The metric objects, on a registry of their own (one per replica, so tests can run several)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.executions = Counter(
            "schedule_executions", "Finished executions by task and outcome.", ["task", "outcome"], registry=r
        )
        # Histograms carry no task label: 18 buckets per task would make the series grow with the tasks.
        # Per-task run times are in GetTaskHistory and the status page.
        self.execution_duration = Histogram(
            "schedule_execution_duration_seconds",
            "Run time of finished executions, by outcome.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.fire_lateness = Histogram(
            "schedule_fire_lateness_seconds",
            "Start of a scheduled execution minus its scheduled instant (first attempts only).",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "schedule_execution_retries", "Retries queued, by the attempt number of the retry.", ["attempt"], registry=r
        )
        self.missed = Counter(
            "schedule_missed_occurrences",
            "Occurrences recorded as missed (outside the catch-up window).",
            ["task"],
            registry=r,
        )
        self.skipped = Counter(
            "schedule_skipped_occurrences", "Occurrences skipped by the overlap policy.", ["task"], registry=r
        )
        self.dead_lettered = Counter(
            "schedule_dead_lettered_executions", "Executions moved to the dead-letter queue.", ["task"], registry=r
        )
        self.event_counter_active = Gauge(
            "schedule_metrics_event_reader_active",
            "1 on the one replica that counts execution events (the schedule_executions_* families).",
            registry=r,
        )
        self.retention_deleted = Counter(
            "schedule_retention_deleted_rows", "Rows deleted by the retention task, by table.", ["table"], registry=r
        )
        self.rpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by method and status code.",
            ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            registry=r,
        )
        self.rpc_latency = Histogram(
            "grpc_server_handling_seconds",
            "Time to complete an RPC (a stream: its whole life).",
            ["grpc_type", "grpc_service", "grpc_method"],
            buckets=RPC_BUCKETS,
            registry=r,
        )
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self._tasks: set[str] = set()  # the task label values in use, so a deleted task's series can go
        self._tasks_lock = threading.Lock()

    def forget_deleted_tasks(self, existing: Callable[[set[str]], set[str]]) -> int:
        """Removes the series of tasks that no longer exist (``existing`` says which of a set do); their count."""
        with self._tasks_lock:
            labelled = set(self._tasks)
        if not labelled:
            return 0
        gone = labelled - existing(labelled)
        for task in gone:
            for outcome in _OUTCOME.values():
                with contextlib.suppress(KeyError):
                    self.executions.remove(task, outcome)
            for family in (self.missed, self.skipped, self.dead_lettered):
                with contextlib.suppress(KeyError):
                    family.remove(task)
        with self._tasks_lock:
            self._tasks -= gone
        return len(gone)

    def observe(self, event: ExecutionEvent) -> None:
        """Counts one execution event."""
        task = event.task_name
        if event.kind in _TASK_LABELLED:
            with self._tasks_lock:
                self._tasks.add(task)
        if event.kind in _OUTCOME:
            outcome = _OUTCOME[event.kind]
            self.executions.labels(task, outcome).inc()
            if event.duration_ms is not None and event.kind is not EventKind.CANCELLED:
                self.execution_duration.labels(outcome).observe(max(event.duration_ms, 0) / 1000)
        elif event.kind is EventKind.STARTED:
            if event.trigger is Trigger.SCHEDULE and event.started_at and event.scheduled_for:
                self.fire_lateness.observe(max((event.started_at - event.scheduled_for).total_seconds(), 0.0))
        elif event.kind is EventKind.RETRIED:
            self.retries.labels(str(event.attempt)).inc()
        elif event.kind is EventKind.MISSED:
            self.missed.labels(task).inc()
        elif event.kind is EventKind.SKIPPED:
            self.skipped.labels(task).inc()
        elif event.kind is EventKind.DEAD_LETTERED:
            self.dead_lettered.labels(task).inc()


class EventCounter:
    """Feeds execution events into Metrics while this replica is the elected counter."""

    def __init__(
        self,
        store: EventStore,
        metrics: Metrics,
        is_counter: Callable[[], bool],
        existing_tasks: Callable[[set[str]], set[str]] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._is_counter = is_counter
        self._existing_tasks = existing_tasks
        self._position: Position | None = None
        self._lock = threading.Lock()

    def catch_up(self) -> None:
        """Counts every event committed since the last call (from now, right after election)."""
        with self._lock:
            if not self._is_counter():
                self._position = None
                self._metrics.event_counter_active.set(0)
                return
            head = self._store.head()
            self._metrics.event_counter_active.set(1)
            if self._position is None:
                self._position = head
                return
            while head > self._position:
                events = self._store.read(self._position, until=head, selector=EventFilter(), limit=READ_BATCH)
                for event in events:
                    self._metrics.observe(event)
                self._position = head if len(events) < READ_BATCH else events[-1].position
            if self._existing_tasks is not None:
                self._metrics.forget_deleted_tasks(self._existing_tasks)


class DatabaseCollector(Collector):
    """Gauges of the shared database, queried at scrape time."""

    def __init__(self, store: ObservationStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("schedule_database_up", "1 when the scrape could query the database.")
        try:
            snapshot = self._store.snapshot()
        except ScheduleError as error:
            log.warning("metrics scrape could not query the database", extra={"error": str(error)})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _gauges(
            [
                ("schedule_dead_letters", "Entries in the dead-letter queue.", snapshot.dead_letters),
                ("schedule_executions_running", "Executions running now.", snapshot.running),
                ("schedule_executions_pending", "Executions waiting to start.", snapshot.pending),
            ]
        )
        if snapshot.leader_epoch is not None:
            yield from _gauges(
                [("schedule_leader_epoch", "Number of the current leadership term.", snapshot.leader_epoch)]
            )
            info = GaugeMetricFamily(
                "schedule_leader_info", "The replica that holds the current leadership term.", labels=["replica_id"]
            )
            info.add_metric([snapshot.leader_replica or ""], 1)
            yield info
        if snapshot.oldest_execution is not None:
            yield from _gauges(
                [
                    (
                        "schedule_execution_history_oldest_timestamp_seconds",
                        "Creation time of the oldest execution kept (the retention moves it forward).",
                        snapshot.oldest_execution.timestamp(),
                    )
                ]
            )


def _gauges(values: Iterable[tuple[str, str, float]]) -> Iterator[Metric]:
    for name, documentation, value in values:
        yield GaugeMetricFamily(name, documentation, value=value)
