"""Builders of the replica's inner parts, each returned complete: observability, the handlers, alerts, the
executor and what wakes it, the scheduling engine, and the use cases."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from schedule_grpc.app.parts import Off, Part
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.models import Execution
from schedule_grpc.execution.alerts import Alerts, EmailAlerts, LogAlerts, SmtpConfig
from schedule_grpc.execution.executor import Executor, ExecutorConfig
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.observability.metrics import DatabaseCollector, EventCounter, Metrics
from schedule_grpc.observability.observe import Alone, EventListener, Observability
from schedule_grpc.observability.watch import EventFeed, Watches
from schedule_grpc.scheduling.engine import SchedulingEngine
from schedule_grpc.settings import Settings
from schedule_grpc.store.audit import AuditEntryStore
from schedule_grpc.store.db import Database
from schedule_grpc.store.dead_letters import DeadLetterStore
from schedule_grpc.store.events import EVENTS_CHANNEL, EventStore
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.leader import lease_for, lock_for
from schedule_grpc.store.notify import COUNTER_LOCK_KEY, Listener
from schedule_grpc.store.observations import ObservationStore
from schedule_grpc.store.occurrences import OccurrenceStore
from schedule_grpc.store.queue import EXECUTIONS_CHANNEL, QueueStore
from schedule_grpc.store.tasks import TaskStore
from schedule_grpc.usecases.audit import AuditTrail
from schedule_grpc.usecases.executions import Executions
from schedule_grpc.usecases.quota import Quota
from schedule_grpc.usecases.tasks import Tasks
from schedule_grpc.usecases.tenancy import Limits


def replica_id(settings: Settings) -> str:
    """This replica's name in leader epochs and logs: SCHEDULE_REPLICA_ID, or the host name and pid."""
    return settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"


def observability(settings: Settings, database: Database) -> Observability:
    """Metrics, the execution-event counter, and the event feed behind WatchExecutions. On Postgres a
    listener wakes the feed on each NOTIFY and elects the one replica that counts the events."""
    metrics = Metrics()
    events = EventStore(database)
    observations = ObservationStore(database)
    feed = EventFeed()
    listener: EventListener = (
        Listener(database, EVENTS_CHANNEL, feed.wake, lock_key=COUNTER_LOCK_KEY) if events.notifies else Alone()
    )
    counter = EventCounter(events, metrics, lambda: listener.holds_lock, existing_tasks=observations.existing_tasks)
    watch = Watches(
        events,
        feed,
        poll_s=settings.watch_poll_s,
        heartbeat_s=settings.watch_heartbeat_s,
        max_streams=settings.watch_max_streams,
    )
    metrics.registry.register(DatabaseCollector(observations))
    return Observability(metrics, feed, watch, counter, listener)


def alerts(settings: Settings) -> Alerts:
    """Alert emails through SCHEDULE_SMTP_HOST, or, without one, a warning in the log."""
    if not settings.smtp_host:
        return LogAlerts()
    return EmailAlerts(
        SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            recipients=settings.smtp_recipients,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout_s=settings.smtp_timeout_s,
            retries=settings.smtp_retries,
            ca_file=settings.smtp_ca_file,
        )
    )


def executor(
    settings: Settings,
    queue: QueueStore,
    handlers: HandlerRegistry,
    clock: Clock,
    alerts: Alerts,
    *,
    replica: str,
    on_recorded: Callable[[Execution, float], None] | None = None,
) -> Executor:
    """The executor of this replica; its lease owner is the replica's name and a random suffix."""
    config = ExecutorConfig(
        owner=f"{replica}-{uuid.uuid4().hex[:8]}",
        concurrency=settings.executor_concurrency,
        remote_concurrency=settings.executor_remote_concurrency,
        owner_share=settings.executor_owner_share,
        manual_headroom=settings.executor_manual_headroom,
        poll_interval_s=settings.executor_poll_interval_s,
        lead_s=settings.fire_lead_used_s,
        lease_s=settings.executor_lease_s,
        memory_limit_mb=settings.executor_memory_limit_mb,
        shutdown_grace_s=settings.shutdown_grace_s,
        secrets_dir=settings.secrets_dir,
    )
    return Executor(queue, handlers, clock, alerts, config, on_recorded=on_recorded)


def wake_ups(database: Database, executor: Executor) -> Part:
    """On Postgres, a listener that wakes the executor when any replica queues an execution; SQLite has one
    replica, whose executor is woken directly (and polls)."""
    if database.dialect.name != "postgresql":
        return Off()
    return Listener(database, EXECUTIONS_CHANNEL, executor.wake)


def scheduling_engine(
    settings: Settings, database: Database, clock: Clock, *, replica: str, on_enqueued: Callable[[], None]
) -> SchedulingEngine:
    """The scheduling engine: fires the tasks while this replica is the elected leader. It reads the tasks
    through a store of its own; the use cases tell it of each change (``task_changed``)."""
    return SchedulingEngine(
        database=database,
        tasks=TaskStore(database),
        occurrences=OccurrenceStore(database),
        lock=lock_for(database),
        lease=lease_for(database),
        grace_s=settings.leader_grace_s,
        clock=clock,
        replica_id=replica,
        reconcile_interval_s=settings.reconcile_interval_s,
        max_catchup_rows=settings.max_catchup_rows_per_pass,
        lead_s=settings.fire_lead_used_s,
        retry_interval_s=settings.leader_retry_interval_s,
        on_enqueued=on_enqueued,
    )


@dataclass(frozen=True)
class UseCases:
    """What the API calls."""

    tasks: Tasks
    executions: Executions
    audit: AuditTrail


def use_cases(
    settings: Settings,
    database: Database,
    handlers: HandlerRegistry,
    clock: Clock,
    *,
    queue: QueueStore,
    executor: Executor,
    task_changed: Callable[[str], None] | None,
) -> UseCases:
    """The use cases over the stores; ``task_changed(name)`` is told of each change to a task."""
    tasks = TaskStore(database, on_change=task_changed)
    audit = AuditTrail(AuditEntryStore(database), clock)
    limits = Limits(
        max_memory_limit_mb=settings.max_memory_limit_mb,
        max_timeout=timedelta(seconds=settings.max_task_timeout_s),
        secrets_dir=settings.secrets_dir,
    )
    return UseCases(
        tasks=Tasks(
            tasks,
            ExecutionStore(database),
            handlers,
            clock,
            queue=queue,
            executor=executor,
            quota=Quota(settings.max_tasks_per_caller, settings.max_metadata_bytes_per_caller),
            limits=limits,
            audit=audit,
        ),
        executions=Executions(queue, DeadLetterStore(database, queue), tasks, executor, clock, audit=audit),
        audit=audit,
    )
