"""A plaintext, health-only gRPC listener for orchestrators whose probes cannot speak TLS."""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2_grpc


def create_health_server(servicer: health.HealthServicer, address: str) -> tuple[grpc.Server, int]:
    """Serves ``servicer`` (the main server's, so both report the same status) and nothing else."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe"), options=[("grpc.so_reuseport", 0)]
    )
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind health address {address}")
    return server, port
