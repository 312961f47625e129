"""The use cases over the in-memory stores, and the callers the tests act as."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from schedule_grpc.domain.caller import Caller, Role
from schedule_grpc.domain.defaults import default_tasks
from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON, DeadLetter, ErrorCategory, Execution, ExecutionStatus, Task, Trigger
from schedule_grpc.domain.validation import NewTask
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.usecases.audit import AuditTrail
from schedule_grpc.usecases.executions import Executions
from schedule_grpc.usecases.quota import Quota
from schedule_grpc.usecases.tasks import Tasks
from schedule_grpc.usecases.tenancy import Limits
from tests.fakes import (
    Memory,
    MemoryAudit,
    MemoryDeadLetters,
    MemoryExecutions,
    MemoryQueue,
    MemoryTasks,
    RecordingExecutor,
)
from tests.support import FakeClock

ALPHA = Caller("alpha", Role.SERVICE)
BETA = Caller("beta", Role.SERVICE)
ADMIN = Caller("ops", Role.ADMIN)
OPEN = None  # the service runs without credentials


class Webhook:
    """Stands for the ``http`` handler: needs a url; fails when the metadata says so."""

    name = "http"
    description = "calls a url"
    category = "remote"

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        if not isinstance(metadata.get("url"), str):
            raise InvalidArgument("metadata.url", "is required")

    def run(self, context: HandlerContext) -> JSON:
        if context.metadata.get("fail"):
            raise HandlerFailed("the receiver answered 500", category=ErrorCategory.LOGIC)
        return {"called": context.metadata["url"]}


class DataJob:
    """A built-in data handler: admins only."""

    description = "works on platform data"
    category = "cleanup"

    def __init__(self, name: str) -> None:
        self.name = name

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        return None

    def run(self, context: HandlerContext) -> JSON:
        return {"rows": 0}


def hook(name: str, **fields: Any) -> NewTask:
    """A task a service may register: the http handler, hourly."""
    base = NewTask(name=name, schedule="@hourly", handler="http", metadata={"url": "https://x.test/"})
    return dataclasses.replace(base, **fields)


@dataclass
class World:
    memory: Memory
    clock: FakeClock
    executor: RecordingExecutor
    tasks: Tasks
    executions: Executions
    audit: AuditTrail

    def execution(self, task: Task, status: ExecutionStatus, **fields: Any) -> Execution:
        """Puts an execution of ``task`` in the ledger, created now (the clock moves on a second after)."""
        now = self.clock.now()
        values: dict[str, Any] = {
            "id": f"exec-{len(self.memory.executions):04d}",
            "task_id": task.id,
            "task_name": task.name,
            "trigger": Trigger.SCHEDULE,
            "scheduled_for": now,
            "attempt": 1,
            "status": status,
            "due_at": now,
            "created_at": now,
        }
        values.update(fields)
        execution = Execution(**values)
        self.memory.executions[execution.id] = execution
        self.clock.advance(timedelta(seconds=1))
        return execution

    def dead_letter(self, task: Task, error: str = "boom") -> DeadLetter:
        now = self.clock.now()
        letter = DeadLetter(
            id=f"dead-{len(self.memory.dead_letters):04d}",
            execution_id="exec-gone",
            task_id=task.id,
            task_name=task.name,
            scheduled_for=now,
            attempts=6,
            error=error,
            error_category=None,
            created_at=now,
        )
        self.memory.dead_letters[letter.id] = letter
        self.clock.advance(timedelta(seconds=1))
        return letter


def build(
    *,
    queued: bool = True,
    quota: Quota | None = None,
    limits: Limits | None = None,
    outcome: ExecutionStatus | None = ExecutionStatus.SUCCESS,
) -> World:
    """The use cases as a replica wires them; ``queued=False``: no queue nor executor (RunTaskNow in-thread)."""
    memory = Memory()
    clock = FakeClock()
    handlers = HandlerRegistry([Webhook(), *(DataJob(t.handler) for t in default_tasks())])
    executor = RecordingExecutor(memory, outcome)
    queue = MemoryQueue(memory)
    audit = AuditTrail(MemoryAudit(memory), clock)
    tasks = Tasks(
        MemoryTasks(memory),
        MemoryExecutions(memory),
        handlers,
        clock,
        queue=queue if queued else None,
        executor=executor if queued else None,
        quota=quota,
        limits=limits,
        audit=audit,
    )
    executions = Executions(queue, MemoryDeadLetters(memory), MemoryTasks(memory), executor, clock, audit=audit)
    return World(memory, clock, executor, tasks, executions, audit)
