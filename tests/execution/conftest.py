"""A replica with the misbehaving handlers, a fast poll, a short lease and a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica, build
from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import Execution, ExecutionStatus, Trigger
from schedule_grpc.handlers.http import HttpHandler
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.settings import Settings
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.queue import QueueStore
from tests.execution import handlers
from tests.execution.remote import AsyncPost, Receiver
from tests.execution.smtp import SmtpServer
from tests.handler_support import LOOPBACK
from tests.support import FakeClock

T = TypeVar("T")


def registry() -> HandlerRegistry:
    return HandlerRegistry([HttpHandler(egress=LOOPBACK), *handlers.ALL])


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path)
    yield server
    server.close()


def replica_settings(database_url: str, smtp: SmtpServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "grpc_address": "127.0.0.1:0",
        "migrate_on_start": False,
        "engine_enabled": False,  # these tests queue executions themselves
        "metrics_address": "",  # several replicas may run at once
        "executor_poll_interval_s": 0.05,
        "executor_lease_s": 2.0,
        "shutdown_grace_s": 1.0,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_ca_file": str(smtp.cert),
        "smtp_to": "ops@example.com, oncall@example.com",
        "smtp_from": "schedule@example.com",
        "smtp_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def start_replica(database_url: str, clock: FakeClock, smtp: SmtpServer, **overrides: Any) -> Replica:
    """A started replica with the http handler, the remote test handler and the misbehaving ones."""
    registry = HandlerRegistry([HttpHandler(), AsyncPost(), *handlers.ALL])
    svc = build(replica_settings(database_url, smtp, **overrides), clock=clock, handlers=registry)
    svc.start()
    return svc


@pytest.fixture
def replica(database_url: str, clock: FakeClock, smtp: SmtpServer) -> Iterator[Replica]:
    svc = build(replica_settings(database_url, smtp), clock=clock, handlers=registry())
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def stub(replica: Replica) -> Iterator[pb_grpc.ScheduleServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{replica.port}") as channel:
        yield pb_grpc.ScheduleServiceStub(channel)


def enqueue_scheduled(replica: Replica, task_id: str, task_name: str, at: datetime) -> Execution:
    """What the scheduling engine does when an occurrence is due."""
    execution = QueueStore(replica.database).enqueue(
        Execution(
            id=new_id("exec"),
            task_id=task_id,
            task_name=task_name,
            trigger=Trigger.SCHEDULE,
            scheduled_for=at,
            attempt=1,
            status=ExecutionStatus.PENDING,
            due_at=at,
            created_at=at,
        )
    )
    replica.executor.wake()
    return execution


def history(replica: Replica, task_name: str) -> list[Execution]:
    """A task's executions, oldest first."""
    return list(reversed(ExecutionStore(replica.database).history(task_name, limit=100)))
