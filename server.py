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

from schedule_grpc import logs
from schedule_grpc.api.auth import Security
from schedule_grpc.api.guard import CallGuard
from schedule_grpc.api.health import HealthMonitor
from schedule_grpc.api.http.app import schedule_app
from schedule_grpc.api.http.serve import HttpShim
from schedule_grpc.api.limits import Rate, RateLimiter
from schedule_grpc.api.probes import create_health_server
from schedule_grpc.api.server import create_server
from schedule_grpc.clock import Clock, SystemClock
from schedule_grpc.handlers.registry import HandlerRegistry, default_registry
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
    http: HttpShim | None = None
    health_server: grpc.Server | None = None
    health_port: int | None = None

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http else None

    def start(self) -> None:
        self.server.start()
        if self.health_server:
            self.health_server.start()
        self.monitor.start()
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
        """Probes see NOT_SERVING first, then the HTTP shim and the gRPC calls drain, then the database closes."""
        self.monitor.stop()
        if self.http:
            self.http.stop()
        self.server.stop(grace=self.settings.shutdown_grace_s).wait()
        if self.health_server:
            self.health_server.stop(grace=None)
        self.engine.dispose()
        log.info("stopped")


def build(settings: Settings, *, clock: Clock | None = None, handlers: HandlerRegistry | None = None) -> Service:
    """Wires a replica from its settings (migrating the database first unless told not to)."""
    clock = clock or SystemClock()
    security = Security.from_settings(settings)  # before anything binds: refuses an open non-loopback address
    engine = db.make_engine(settings.database_url, pool_size=settings.db_pool_size)
    if settings.migrate_on_start:
        db.migrate(engine)
    tasks = TaskService(TaskStore(engine), ExecutionStore(engine), handlers or default_registry(), clock)
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
        interceptors=[CallGuard(security, limiter)],
        credentials=security.server_credentials,
    )
    monitor = HealthMonitor(
        health_servicer, [("database", partial(db.ping, engine))], interval_s=settings.health_interval_s
    )
    service = Service(settings, engine, server, port, health_servicer, monitor)
    if settings.health_address:
        service.health_server, service.health_port = create_health_server(health_servicer, settings.health_address)
    if settings.http_address:
        # The shim reaches the API through a plaintext port on loopback, so it needs no client certificate;
        # callers still present their bearer token, which the shim passes on.
        local_port = server.add_insecure_port("127.0.0.1:0")
        app = schedule_app(f"127.0.0.1:{local_port}", max_body_bytes=settings.http_max_body_bytes)
        service.http = HttpShim(app, settings.http_address, grace_s=settings.shutdown_grace_s)
    return service


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
    service.start()
    stop.wait()  # SIGTERM / SIGINT
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s})
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
