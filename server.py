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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import grpc
from sqlalchemy import Engine

from schedule_grpc.api.access_log import AccessLog
from schedule_grpc.api.auth import Security
from schedule_grpc.api.capacity import Health, LongCalls
from schedule_grpc.api.guard import CallGuard
from schedule_grpc.api.health import HealthMonitor
from schedule_grpc.api.http.app import schedule_app
from schedule_grpc.api.http.serve import HttpShim
from schedule_grpc.api.limits import Rate, RateLimiter
from schedule_grpc.api.metrics import MetricsInterceptor
from schedule_grpc.api.probes import create_health_server
from schedule_grpc.api.server import create_server
from schedule_grpc.domain.clock import Clock, SystemClock
from schedule_grpc.execution.alerts import Alerts, EmailAlerts, LogAlerts, SmtpConfig
from schedule_grpc.execution.executor import Executor, ExecutorConfig
from schedule_grpc.handlers.maintenance import HistoryCleanupHandler
from schedule_grpc.handlers.registry import HandlerRegistry, default_registry, deny_own_endpoints, endpoints
from schedule_grpc.observability import logs
from schedule_grpc.observability.observe import Observability
from schedule_grpc.scheduling.engine import SchedulingEngine
from schedule_grpc.settings import Settings, SettingsError
from schedule_grpc.store import db
from schedule_grpc.store.audit import AuditEntryStore
from schedule_grpc.store.dead_letters import DeadLetterStore
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.leader import lease_for, lock_for
from schedule_grpc.store.notify import Listener
from schedule_grpc.store.occurrences import OccurrenceStore
from schedule_grpc.store.queue import EXECUTIONS_CHANNEL, QueueStore
from schedule_grpc.store.tasks import Quota, TaskStore
from schedule_grpc.usecases import retention
from schedule_grpc.usecases.audit import AuditTrail
from schedule_grpc.usecases.executions import Executions
from schedule_grpc.usecases.retention import RetentionPolicy
from schedule_grpc.usecases.tasks import Tasks
from schedule_grpc.usecases.tenancy import Limits

log = logging.getLogger("schedule_grpc")


@dataclass
class Service:
    """The running parts of one replica."""

    settings: Settings
    engine: Engine
    server: grpc.Server
    port: int
    health: Health
    monitor: HealthMonitor
    executor: Executor | None = None
    alerts: Alerts | None = None
    listener: Listener | None = None
    scheduling: SchedulingEngine | None = None
    http: HttpShim | None = None
    tasks: Tasks | None = None
    observability: Observability | None = None
    health_server: grpc.Server | None = None
    health_port: int | None = None
    long_calls: LongCalls | None = None

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

    def stop(self, *, drain_s: float = 0.0) -> None:
        """Probes see NOT_SERVING at once and for the drain delay (load balancers and the kubelet take the
        replica out while it still answers), then streams end with UNAVAILABLE (clients reconnect elsewhere),
        the HTTP shim and the gRPC calls drain, the scheduling engine and the executor stop, the database closes.
        The process passes SCHEDULE_SHUTDOWN_DRAIN_S on SIGTERM; embedders and tests stop at once by default.
        """
        self.monitor.stop()
        if drain_s > 0:
            log.info("draining: health reports NOT_SERVING", extra={"drain_s": drain_s})
            time.sleep(drain_s)
        self.health.end_watches()
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
        registry.register(
            HistoryCleanupHandler(
                retention.PurgeHistory(settings.database_url, RetentionPolicy.from_settings(settings))
            )
        )
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
            secrets_dir=settings.secrets_dir,
        ),
        on_recorded=observability.recorded,
    )
    listener = Listener(engine, EXECUTIONS_CHANNEL, executor.wake) if engine.dialect.name == "postgresql" else None
    quota = Quota(settings.max_tasks_per_caller, settings.max_metadata_bytes_per_caller)
    limits = Limits(
        max_memory_limit_mb=settings.max_memory_limit_mb,
        max_timeout=timedelta(seconds=settings.max_task_timeout_s),
        secrets_dir=settings.secrets_dir,
    )
    audit = AuditTrail(AuditEntryStore(engine), clock)
    tasks = Tasks(
        task_store,
        ExecutionStore(engine),
        registry,
        clock,
        queue=queue,
        executor=executor,
        quota=quota,
        limits=limits,
        audit=audit,
    )
    operations = Executions(queue, DeadLetterStore(engine, queue), task_store, executor, clock, audit=audit)
    limiter = RateLimiter(
        {
            "default": Rate(settings.rate_limit_per_s, settings.rate_limit_burst),
            "expensive": Rate(settings.expensive_rate_limit_per_s, settings.expensive_rate_limit_burst),
        },
        now=lambda: clock.now().timestamp(),
        max_keys=settings.rate_limit_max_callers,
    )
    failures = RateLimiter(
        {"auth": Rate(settings.auth_failure_per_s, settings.auth_failure_burst)},
        now=time.monotonic,
        max_keys=settings.rate_limit_max_callers,
    )
    long_calls = LongCalls(per_replica=settings.long_calls_max, per_caller=settings.long_calls_per_caller)
    server, port, health_servicer = create_server(
        tasks,
        settings.grpc_address,
        max_workers=settings.grpc_max_workers,
        queue=operations,
        watch=observability.watch,
        long_calls=long_calls,
        audit=audit,
        # access log and metrics outermost: they see the calls the guard refuses too
        interceptors=[
            AccessLog(settings.access_log_sample),
            MetricsInterceptor(observability.metrics),
            CallGuard(security, limiter, failures),
        ],
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
                lease=lease_for(engine),
                grace_s=settings.leader_grace_s,
                clock=clock,
                replica_id=replica_id,
                reconcile_interval_s=settings.reconcile_interval_s,
                max_catchup_rows=settings.max_catchup_rows_per_pass,
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
        long_calls=long_calls,
    )
    if settings.health_address:
        service.health_server, service.health_port = create_health_server(health_servicer, settings.health_address)
    listeners: list[tuple[str, int]] = []
    if settings.http_address:
        # The shim reaches the API through a plaintext port on loopback, so it needs no client certificate;
        # callers still present their bearer token, which the shim passes on.
        local_port = server.add_insecure_port("127.0.0.1:0")
        app = schedule_app(f"127.0.0.1:{local_port}", max_body_bytes=settings.http_max_body_bytes)
        service.http = HttpShim(app, settings.http_address, grace_s=settings.shutdown_grace_s)
        listeners.append(("127.0.0.1", local_port))
    # Ports are bound now (port 0 picks one): tasks may never call the service's own listeners.
    deny_own_endpoints(registry, listeners + _bound(settings, service))
    return service


def _bound(settings: Settings, service: Service) -> list[tuple[str, int]]:
    """(address, port) of each listener as bound: the configured host with the port actually taken."""
    observed = service.observability.http if service.observability is not None else None
    bound = [
        (settings.grpc_address, service.port),
        (settings.http_address, service.http.port if service.http is not None else None),
        (settings.metrics_address, observed.port if observed is not None else None),
        (settings.health_address, service.health_port),
    ]
    return [pair for address, port in bound if address and port for pair in endpoints(address, port)]


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
            retention.check_maintenance_task(service.tasks.find)
        except Exception:  # the database may be down now; the next start installs it
            log.exception("could not install the built-in retention task")
    service.start()
    stop.wait()  # SIGTERM / SIGINT
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s, "drain_s": settings.shutdown_drain_s})
    service.stop(drain_s=settings.shutdown_drain_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
