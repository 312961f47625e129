"""Composition root: reads settings, wires everything, serves, and shuts down in order.

Run it as ``python server.py`` or with the ``schedule-grpc`` console script.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import grpc
from grpc_health.v1 import health
from sqlalchemy import Engine

from schedule_grpc import logs, retention
from schedule_grpc.alerts import Alerts, EmailAlerts, LogAlerts, SmtpConfig
from schedule_grpc.api.auth import Security
from schedule_grpc.api.guard import CallGuard
from schedule_grpc.api.health import HealthMonitor
from schedule_grpc.api.http.app import schedule_app
from schedule_grpc.api.http.serve import HttpShim
from schedule_grpc.api.limits import Rate, RateLimiter
from schedule_grpc.api.metrics import MetricsInterceptor
from schedule_grpc.api.probes import create_health_server
from schedule_grpc.api.server import create_server
from schedule_grpc.clock import Clock, SystemClock
from schedule_grpc.engine.engine import SchedulingEngine
from schedule_grpc.executor import Executor, ExecutorConfig
from schedule_grpc.handlers.maintenance import HistoryCleanupHandler
from schedule_grpc.handlers.registry import HandlerRegistry, default_registry
from schedule_grpc.observe import Observability
from schedule_grpc.queue_service import QueueService
from schedule_grpc.retention import RetentionPolicy
from schedule_grpc.service import TaskService
from schedule_grpc.settings import Settings, SettingsError
from schedule_grpc.store import db
from schedule_grpc.store.dead_letters import DeadLetterStore
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.leader import lock_for, record_epoch
from schedule_grpc.store.notify import Listener
from schedule_grpc.store.occurrences import OccurrenceStore
from schedule_grpc.store.queue import EXECUTIONS_CHANNEL, QueueStore
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
    executor: Executor | None = None
    alerts: Alerts | None = None
    listener: Listener | None = None
    scheduling: SchedulingEngine | None = None
    http: HttpShim | None = None
    tasks: TaskService | None = None
    observability: Observability | None = None
    health_server: grpc.Server | None = None
    health_port: int | None = None

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http else None

    def start(self) -> None:
        if isinstance(self.alerts, EmailAlerts):
            self.alerts.start()
        if self.executor is not None:
            self.executor.start()
        if self.listener is not None:
            self.listener.start()
        self.server.start()
        if self.health_server:
            self.health_server.start()
        self.monitor.start()
        if self.observability is not None:
            self.observability.start()
        if self.scheduling is not None:
            self.scheduling.start()
        if self.http:
            self.http.start()
        log.info(
            "serving",
            extra={
                "grpc_port": self.port,
                "http_port": self.http_port,
                "health_port": self.health_port,
                "database": self.engine.url.render_as_string(),
            },
        )

    def stop(self) -> None:
        """Probes see NOT_SERVING first, then the HTTP shim and the gRPC calls drain, then the scheduling
        engine and the executor stop, then the database closes."""
        self.monitor.stop()
        if self.observability is not None:
            self.observability.end_streams()  # watchers would otherwise hold the grace period
        if self.http:
            self.http.stop()
        self.server.stop(grace=self.settings.shutdown_grace_s).wait()
        if self.health_server:
            self.health_server.stop(grace=None)
        if self.scheduling is not None:
            self.scheduling.stop()
        if self.listener is not None:
            self.listener.stop()
        if self.executor is not None:
            self.executor.stop()  # running handlers get the grace period, then are stopped and recorded
        if isinstance(self.alerts, EmailAlerts):
            self.alerts.stop()
        if self.observability is not None:
            self.observability.stop()
        self.engine.dispose()
        log.info("stopped")


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    handlers: HandlerRegistry | None = None,
    on_enqueued: Callable[[], None] | None = None,
) -> Service:
    """Wires a replica from its settings (migrating the database first unless told not to).

    ``on_enqueued`` is called after the scheduling engine queued pending executions (the executor's wake-up).
    """
    clock = clock or SystemClock()
    security = Security.from_settings(settings)  # before anything binds: refuses an open non-loopback address
    engine = db.make_engine(settings.database_url, pool_size=settings.db_pool_size)
    if settings.migrate_on_start:
        db.migrate(engine)
    scheduling: list[SchedulingEngine] = []  # filled below; task changes are passed on to it

    def task_changed(name: str) -> None:
        for engine_ in scheduling:
            engine_.task_changed(name)

    observability = Observability(settings, engine, clock)
    registry = handlers or default_registry(settings)
    if registry.get(retention.TASK_NAME) is None:  # the built-in retention task's handler
        registry.register(HistoryCleanupHandler(settings.database_url, RetentionPolicy.from_settings(settings)))
    task_store = TaskStore(engine, on_change=task_changed)
    queue = QueueStore(engine)
    alerts = _alerts(settings)
    replica_id = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"
    executor = Executor(
        queue,
        registry,
        clock,
        alerts,
        ExecutorConfig(
            owner=f"{replica_id}-{uuid.uuid4().hex[:8]}",
            concurrency=settings.executor_concurrency,
            remote_concurrency=settings.executor_remote_concurrency,
            owner_share=settings.executor_owner_share,
            manual_headroom=settings.executor_manual_headroom,
            poll_interval_s=settings.executor_poll_interval_s,
            lease_s=settings.executor_lease_s,
            memory_limit_mb=settings.executor_memory_limit_mb,
            shutdown_grace_s=settings.shutdown_grace_s,
        ),
        on_recorded=observability.recorded,
    )
    listener = Listener(engine, EXECUTIONS_CHANNEL, executor.wake) if engine.dialect.name == "postgresql" else None
    tasks = TaskService(task_store, ExecutionStore(engine), registry, clock, queue=queue, executor=executor)
    operations = QueueService(queue, DeadLetterStore(engine, queue), task_store, executor, clock)
    limiter = RateLimiter(
        {
            "default": Rate(settings.rate_limit_per_s, settings.rate_limit_burst),
            "expensive": Rate(settings.expensive_rate_limit_per_s, settings.expensive_rate_limit_burst),
        },
        now=lambda: clock.now().timestamp(),
    )
    server, port, health_servicer = create_server(
        tasks,
        settings.grpc_address,
        max_workers=settings.grpc_max_workers,
        queue=operations,
        watch=observability.watch,
        # metrics outermost: they count the calls the guard refuses too
        interceptors=[MetricsInterceptor(observability.metrics), CallGuard(security, limiter)],
        credentials=security.server_credentials,
    )
    observability.serve_http(tasks)
    checks: list[tuple[str, Callable[[], None]]] = [("database", partial(db.ping, engine))]
    if settings.engine_enabled:

        def enqueued() -> None:
            executor.wake()
            if on_enqueued is not None:
                on_enqueued()

        scheduling.append(
            SchedulingEngine(
                database=engine,
                tasks=task_store,
                occurrences=OccurrenceStore(engine),
                lock=lock_for(engine),
                record_epoch=partial(record_epoch, engine),
                clock=clock,
                replica_id=replica_id,
                reconcile_interval_s=settings.reconcile_interval_s,
                retry_interval_s=settings.leader_retry_interval_s,
                on_enqueued=enqueued,
            )
        )
        checks.append(("scheduling engine", scheduling[0].check))
    monitor = HealthMonitor(health_servicer, checks, interval_s=settings.health_interval_s)
    service = Service(
        settings,
        engine,
        server,
        port,
        health_servicer,
        monitor,
        executor,
        alerts,
        listener,
        scheduling[0] if scheduling else None,
        tasks=tasks,
        observability=observability,
    )
    if settings.health_address:
        service.health_server, service.health_port = create_health_server(health_servicer, settings.health_address)
    if settings.http_address:
        # The shim reaches the API through a plaintext port on loopback, so it needs no client certificate;
        # callers still present their bearer token, which the shim passes on.
        local_port = server.add_insecure_port("127.0.0.1:0")
        app = schedule_app(f"127.0.0.1:{local_port}", max_body_bytes=settings.http_max_body_bytes)
        service.http = HttpShim(app, settings.http_address, grace_s=settings.shutdown_grace_s)
    return service


def _alerts(settings: Settings) -> Alerts:
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
    except SettingsError as error:
        log.error("invalid configuration: %s", error)
        return 2
    except Exception:
        log.exception("start-up failed")
        return 1
    if service.tasks is not None:  # before serving, so the first ListTasks already shows it
        try:
            retention.install_maintenance_task(service.tasks.register, settings.retention_schedule)
        except Exception:  # the database may be down now; the next start installs it
            log.exception("could not install the built-in retention task")
    service.start()
    stop.wait()  # SIGTERM / SIGINT
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s})
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
