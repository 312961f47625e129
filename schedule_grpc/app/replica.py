"""One replica: its complete parts, started and stopped in one visible order."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from schedule_grpc.api.capacity import Health, LongCalls
from schedule_grpc.api.health import HealthMonitor
from schedule_grpc.api.listeners import GrpcListener
from schedule_grpc.app.parts import Listening, Part
from schedule_grpc.execution.alerts import Alerts
from schedule_grpc.execution.executor import Executor
from schedule_grpc.observability.observe import Observability
from schedule_grpc.settings import Settings
from schedule_grpc.store.db import Database
from schedule_grpc.usecases.tasks import Tasks

log = logging.getLogger("schedule_grpc")


@dataclass(frozen=True)
class Replica:
    """The running parts of one replica. A part the settings turn off is an ``Off`` (it does nothing)."""

    settings: Settings
    database: Database
    tasks: Tasks
    grpc: GrpcListener
    health: Health  # the health servicer of both gRPC listeners
    monitor: HealthMonitor  # publishes SERVING while the checks pass
    long_calls: LongCalls
    health_server: Listening  # plaintext, health only (SCHEDULE_HEALTH_ADDRESS)
    http: Listening  # the HTTP/JSON shim (SCHEDULE_HTTP_ADDRESS)
    metrics_http: Listening  # /metrics and /status (SCHEDULE_METRICS_ADDRESS)
    observability: Observability
    scheduling: Part  # the scheduling engine (SCHEDULE_ENGINE_ENABLED)
    executor: Executor
    wake_ups: Part  # wakes the executor on each execution queued anywhere (Postgres NOTIFY)
    alerts: Alerts

    @property
    def port(self) -> int:
        """The gRPC port as bound."""
        return self.grpc.port

    @property
    def http_port(self) -> int | None:
        return self.http.port

    @property
    def health_port(self) -> int | None:
        return self.health_server.port

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_http.port

    def start(self) -> None:
        self.alerts.start()
        self.executor.start()
        self.wake_ups.start()
        self.grpc.start()
        self.health_server.start()
        self.monitor.start()
        self.observability.start()
        self.metrics_http.start()
        self.scheduling.start()
        self.http.start()
        log.info(
            "serving",
            extra={
                "grpc_port": self.port,
                "http_port": self.http_port,
                "health_port": self.health_port,
                "database": self.database.url.render_as_string(),
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
        self.observability.end_streams()  # watchers would otherwise hold the grace period
        self.http.stop()
        self.grpc.stop()  # calls in flight get SCHEDULE_SHUTDOWN_GRACE_S
        self.health_server.stop()
        self.scheduling.stop()
        self.wake_ups.stop()
        self.executor.stop()  # running handlers get the grace period, then are stopped and recorded
        self.alerts.stop()
        self.metrics_http.stop()
        self.observability.stop()
        self.database.dispose()
        log.info("stopped")
