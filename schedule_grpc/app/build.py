"""The composition root: one replica built from its settings, part by part, each part complete."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from schedule_grpc.api.auth import Security
from schedule_grpc.api.health import HealthMonitor
from schedule_grpc.app import builders, listeners
from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.app.parts import Off
from schedule_grpc.app.replica import Replica
from schedule_grpc.domain.clock import Clock, SystemClock
from schedule_grpc.handlers.registry import HandlerRegistry, deny_own_endpoints
from schedule_grpc.scheduling.engine import SchedulingEngine
from schedule_grpc.settings import Settings
from schedule_grpc.store import db
from schedule_grpc.store.db import Database
from schedule_grpc.store.queue import QueueStore
from schedule_grpc.usecases import retention

log = logging.getLogger("schedule_grpc")


def build(settings: Settings, *, clock: Clock | None = None, handlers: HandlerRegistry | None = None) -> Replica:
    """Wires a replica from its settings (migrating the database first unless told not to); nothing runs
    until ``Replica.start``. ``handlers`` replaces the registry the settings configure (tests, drills)."""
    clock = clock or SystemClock()
    security = Security.from_settings(settings)  # before anything binds: refuses an open non-loopback address
    database = db.make_engine(settings.database_url, pool_size=settings.db_pool_size)
    if settings.migrate_on_start:
        db.migrate(database)
    replica = builders.replica_id(settings)
    registry = handlers or handler_registry(settings)
    observability = builders.observability(settings, database)
    alerts = builders.alerts(settings)
    queue = QueueStore(database)
    executor = builders.executor(
        settings, queue, registry, clock, alerts, replica=replica, on_recorded=observability.recorded
    )
    engine = (
        builders.scheduling_engine(settings, database, clock, replica=replica, on_enqueued=executor.wake)
        if settings.engine_enabled
        else None
    )
    uses = builders.use_cases(
        settings,
        database,
        registry,
        clock,
        queue=queue,
        executor=executor,
        task_changed=engine.task_changed if engine is not None else None,
    )
    api = listeners.grpc_api(settings, security, uses, observability, clock)
    health_server = listeners.health_server(settings, api.health)
    http = listeners.http_shim(settings, api.listener)
    metrics_http = listeners.metrics_http(settings, observability, uses, database, clock)
    # Ports are bound now (port 0 picks one): tasks may never call the service's own listeners.
    bound = [
        (settings.grpc_address, api.listener),
        (settings.http_address, http),
        (settings.metrics_address, metrics_http),
        (settings.health_address, health_server),
    ]
    deny_own_endpoints(registry, listeners.own_endpoints(bound))
    return Replica(
        settings=settings,
        database=database,
        tasks=uses.tasks,
        grpc=api.listener,
        health=api.health,
        monitor=HealthMonitor(api.health, _checks(database, engine), interval_s=settings.health_interval_s),
        long_calls=api.long_calls,
        health_server=health_server,
        http=http,
        metrics_http=metrics_http,
        observability=observability,
        scheduling=engine if engine is not None else Off(),
        executor=executor,
        wake_ups=builders.wake_ups(database, executor),
        alerts=alerts,
    )


def _checks(database: Database, engine: SchedulingEngine | None) -> list[tuple[str, Callable[[], None]]]:
    """What health reports SERVING on: the database answers, and the scheduling engine (if on) is not failing."""
    checks: list[tuple[str, Callable[[], None]]] = [("database", partial(db.ping, database))]
    if engine is not None:
        checks.append(("scheduling engine", engine.check))
    return checks


def install_builtin_tasks(replica: Replica) -> None:
    """The built-in retention task on SCHEDULE_RETENTION_SCHEDULE, unless it exists; and a loud error if
    another task holds its name. Before serving, so the first ListTasks already shows it."""
    try:
        retention.install_maintenance_task(replica.tasks.register, replica.settings.retention_schedule)
        retention.check_maintenance_task(replica.tasks.find)
    except Exception:  # the database may be down now; the next start installs it
        log.exception("could not install the built-in retention task")
