"""The gRPC server: the schedule API, health and reflection, behind the interceptors."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.api.capacity import CachedChain, CapacityRouter, Health, LongCalls
from schedule_grpc.api.health import SERVICE_NAME
from schedule_grpc.api.servicer import ScheduleServicer
from schedule_grpc.api.status import ErrorInterceptor
from schedule_grpc.observability.watch import Watches
from schedule_grpc.usecases.audit import AuditTrail
from schedule_grpc.usecases.executions import Executions
from schedule_grpc.usecases.tasks import Tasks


def create_server(
    tasks: Tasks,
    address: str,
    *,
    max_workers: int = 16,
    interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
    queue: Executions | None = None,
    credentials: grpc.ServerCredentials | None = None,
    watch: Watches | None = None,
    long_calls: LongCalls | None = None,
    audit: AuditTrail | None = None,
) -> tuple[grpc.Server, int, Health]:
    """Builds (not starts) the server bound to ``address``; returns it, the bound port and its health servicer.

    Port 0 binds a free port (tests). With ``credentials`` the port speaks TLS. ``max_workers`` threads serve
    the short calls; health, reflection and the long calls (``long_calls``) have threads of their own.
    """
    long_calls = long_calls or LongCalls(per_replica=16, per_caller=4)
    health_servicer = Health()
    router = CapacityRouter(health_servicer, long_calls)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[CachedChain([router, *interceptors, ErrorInterceptor()])],
        options=[("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_ScheduleServiceServicer_to_server(ScheduleServicer(tasks, queue, watch, long_calls, audit), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        [
            pb.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind gRPC address {address}")
    return server, port, health_servicer
