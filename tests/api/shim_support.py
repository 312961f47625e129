"""A real server with its HTTP shim on loopback ports, and the credentials the auth tests use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from schedule_grpc.api.auth import hash_token
from schedule_grpc.app import Replica, build
from schedule_grpc.settings import Settings
from tests.support import FakeClock

# token -> (caller name, role); the server is configured with their hashes only.
TOKENS = {
    "alpha-secret": ("alpha", "service"),
    "beta-secret": ("beta", "service"),
    "root-secret": ("ops", "admin"),
}
AUTH_TOKENS = ",".join(f"{name}:{role}:{hash_token(token)}" for token, (name, role) in TOKENS.items())


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@contextlib.contextmanager
def serve(database_url: str, clock: FakeClock, **settings: Any) -> Iterator[Replica]:
    """A started replica on 127.0.0.1: gRPC and HTTP on free ports; stopped afterwards."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "grpc_address": "127.0.0.1:0",
        "http_address": "127.0.0.1:0",
        "metrics_address": "127.0.0.1:0",  # not the fixed default port: test runs may overlap
        "migrate_on_start": False,
        "engine_enabled": False,  # the engine's APScheduler runs on the wall clock, not on the test's clock
        "egress_allow": "127.0.0.0/8",  # the tests' receivers are on loopback
        **settings,
    }
    service = build(Settings(**values), clock=clock)
    service.start()
    try:
        yield service
    finally:
        service.stop()
