"""Composition root: reads settings, wires everything, serves, and shuts down in order.

Run it as ``python server.py`` or with the ``schedule-grpc`` console script.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from functools import partial

import grpc
from grpc_health.v1 import health
from sqlalchemy import Engine

from schedule_grpc import logs, retention
from schedule_grpc.api.health import HealthMonitor
from schedule_grpc.api.metrics import MetricsInterceptor
from schedule_grpc.api.server import create_server
from schedule_grpc.clock import Clock, SystemClock
from schedule_grpc.handlers.maintenance import HistoryCleanupHandler
from schedule_grpc.handlers.registry import HandlerRegistry, default_registry
from schedule_grpc.observe import Observability
from schedule_grpc.service import TaskService
from schedule_grpc.settings import Settings, SettingsError
from schedule_grpc.store import db
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.tasks import TaskStore

log = logging.getLogger("schedule_grpc")


@dataclass
class Service:
    """The running parts of one replica."""

    settings: Settings
    engine: Engine
    server: grpc.Server
    port: int
    health: health.HealthServicer
    monitor: HealthMonitor
    tasks: TaskService | None = None
    observability: Observability | None = None

    def start(self) -> None:
        self.server.start()
        self.monitor.start()
        if self.observability is not None:
            self.observability.start()
        log.info("serving", extra={"grpc_port": self.port, "database": self.engine.url.render_as_string()})

    def stop(self) -> None:
        """Probes see NOT_SERVING first, then calls drain, then the database closes."""
        self.monitor.stop()
        if self.observability is not None:
            self.observability.end_streams()  # watchers would otherwise hold the grace period
        self.server.stop(grace=self.settings.shutdown_grace_s).wait()
        if self.observability is not None:
            self.observability.stop()
        self.engine.dispose()
        log.info("stopped")


def build(settings: Settings, *, clock: Clock | None = None, handlers: HandlerRegistry | None = None) -> Service:
    """Wires a replica from its settings (migrating the database first unless told not to)."""
    clock = clock or SystemClock()
    engine = db.make_engine(settings.database_url, pool_size=settings.db_pool_size)
    if settings.migrate_on_start:
        db.migrate(engine)
    observability = Observability(settings, engine, clock)
    registry = handlers or default_registry()
    if registry.get(retention.TASK_NAME) is None:  # it needs the database, so it is wired here
        registry.register(HistoryCleanupHandler(observability.retention))
    tasks = TaskService(TaskStore(engine), ExecutionStore(engine), registry, clock)
    server, port, health_servicer = create_server(
        tasks,
        settings.grpc_address,
        max_workers=settings.grpc_max_workers,
        interceptors=[MetricsInterceptor(observability.metrics)],
        watch=observability.watch,
    )
    observability.serve_http(tasks)
    monitor = HealthMonitor(
        health_servicer, [("database", partial(db.ping, engine))], interval_s=settings.health_interval_s
    )
    return Service(settings, engine, server, port, health_servicer, monitor, tasks, observability)


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        service = build(settings)
    except Exception:
        log.exception("start-up failed")
        return 1
    service.start()
    if service.tasks is not None:
        try:
            retention.install_maintenance_task(service.tasks.register, settings.retention_schedule)
        except Exception:  # the database may be down now; the next start installs it
            log.exception("could not install the built-in retention task")
    stop.wait()  # SIGTERM / SIGINT
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s})
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
