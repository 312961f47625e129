"""Builders of what the replica listens with: the gRPC API, the health-only port, the HTTP/JSON shim, and
/metrics with /status. Each is bound when built (port 0 takes a free port), served from ``start``."""

from __future__ import annotations

import time
from dataclasses import dataclass

from schedule_grpc.api.access_log import AccessLog
from schedule_grpc.api.auth import Security
from schedule_grpc.api.capacity import Health, LongCalls
from schedule_grpc.api.guard import CallGuard
from schedule_grpc.api.http.app import schedule_app
from schedule_grpc.api.http.serve import HttpShim
from schedule_grpc.api.limits import Rate, RateLimiter
from schedule_grpc.api.listeners import GrpcListener
from schedule_grpc.api.metrics import MetricsInterceptor
from schedule_grpc.api.probes import create_health_server
from schedule_grpc.api.server import create_server
from schedule_grpc.app.builders import UseCases
from schedule_grpc.app.parts import Listening, Off
from schedule_grpc.domain.clock import Clock
from schedule_grpc.handlers.registry import endpoints
from schedule_grpc.observability.observe import STATUS_PAGE_VIEWER, Observability, metrics_server
from schedule_grpc.observability.status_page import StatusPage
from schedule_grpc.settings import Settings
from schedule_grpc.store.db import Database
from schedule_grpc.store.observations import ObservationStore


@dataclass(frozen=True)
class GrpcApi:
    """The gRPC server with its health servicer and the long-call capacity it shares out."""

    listener: GrpcListener
    health: Health
    long_calls: LongCalls


def grpc_api(
    settings: Settings, security: Security, uses: UseCases, observability: Observability, clock: Clock
) -> GrpcApi:
    """The API on SCHEDULE_GRPC_ADDRESS behind the interceptors: access log and metrics outermost (they see
    the calls the guard refuses too), then the guard (credentials, rate limits)."""
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
    server, port, health = create_server(
        uses.tasks,
        settings.grpc_address,
        max_workers=settings.grpc_max_workers,
        queue=uses.executions,
        watch=observability.watch,
        long_calls=long_calls,
        audit=uses.audit,
        interceptors=[
            AccessLog(settings.access_log_sample),
            MetricsInterceptor(observability.metrics),
            CallGuard(security, limiter, failures),
        ],
        credentials=security.server_credentials,
    )
    return GrpcApi(GrpcListener(server, port, grace_s=settings.shutdown_grace_s), health, long_calls)


def health_server(settings: Settings, health: Health) -> Listening:
    """The plaintext, health-only listener on SCHEDULE_HEALTH_ADDRESS (off when empty)."""
    if not settings.health_address:
        return Off()
    server, port = create_health_server(health, settings.health_address)
    return GrpcListener(server, port, grace_s=None)


def http_shim(settings: Settings, api: GrpcListener) -> Listening:
    """The HTTP/JSON shim on SCHEDULE_HTTP_ADDRESS (off when empty). It reaches the API through a plaintext
    port on loopback, so it needs no client certificate; callers still present their bearer token, which
    the shim passes on."""
    if not settings.http_address:
        return Off()
    local_port = api.add_loopback_port()
    app = schedule_app(f"127.0.0.1:{local_port}", max_body_bytes=settings.http_max_body_bytes)
    return _Shim(HttpShim(app, settings.http_address, grace_s=settings.shutdown_grace_s), local_port)


class _Shim:
    """The shim's listener, and the loopback port of the API it calls (a port of the service's own too)."""

    def __init__(self, shim: HttpShim, local_port: int) -> None:
        self._shim = shim
        self.port = shim.port
        self.local_port = local_port

    def start(self) -> None:
        self._shim.start()

    def stop(self) -> None:
        self._shim.stop()


def metrics_http(
    settings: Settings, observability: Observability, uses: UseCases, database: Database, clock: Clock
) -> Listening:
    """/metrics and /status on SCHEDULE_METRICS_ADDRESS (off when empty)."""
    if not settings.metrics_address:
        return Off()
    # Nobody is authenticated on this port: with credentials configured, the page shows what any service
    # caller sees of others' tasks (existence, schedule, state, outcomes), never errors.
    closed = bool(settings.auth_tokens or settings.grpc_tls_client_ca_file)
    viewer = STATUS_PAGE_VIEWER if closed else None
    page = StatusPage(uses.tasks, ObservationStore(database), clock, viewer=viewer)
    return metrics_server(settings.metrics_address, observability, page)


def own_endpoints(listeners: list[tuple[str, Listening]]) -> list[tuple[str, int]]:
    """(address, port) of each listener as bound, from (listen address, listener) pairs: the configured host
    with the port actually taken, and the shim's loopback port of the API."""
    bound = [("127.0.0.1", part.local_port) for _, part in listeners if isinstance(part, _Shim)]
    for address, part in listeners:
        if address and part.port:
            bound.extend(endpoints(address, part.port))
    return bound
