"""Building scheduling engines on a test database, with a fake clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.domain.models import OverlapPolicy, Task
from schedule_grpc.domain.validation import NewTask
from schedule_grpc.scheduling.engine import SchedulingEngine
from schedule_grpc.settings import Settings
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.leader import LeaderLock, lease_for, lock_for
from schedule_grpc.store.occurrences import OccurrenceStore
from schedule_grpc.store.tasks import TaskStore
from schedule_grpc.usecases.tasks import Tasks
from tests.support import FakeClock

# Years after the wall clock, so nothing depends on it: the engine (its firing loop included) reads
# only the fake clock, which each test moves, then reconciles (or lets the loop's next pass fire).
FUTURE = datetime(2031, 6, 2, 9, 0, 30, tzinfo=UTC)


@dataclass
class Replica:
    engine: SchedulingEngine
    tasks: Tasks
    wakeups: list[int] = field(default_factory=list)


def make_replica(
    db: Engine,
    clock: FakeClock,
    name: str = "r1",
    *,
    lock: LeaderLock | None = None,
    interval_s: float = 60.0,
    horizon_s: float = 2 * 86400,
    monotonic: Callable[[], float] = time.monotonic,
    grace_s: float = 3.0,
    max_catchup_rows: int = 20_000,
    lead_s: float = 0.0,
) -> Replica:
    """A replica whose scheduler looks ``horizon_s`` ahead (two days unless a test is about the horizon)."""
    wakeups: list[int] = []
    # as schedule_grpc.app wires it: the engine reads the tasks through a store of its own, and the use
    # cases' store tells it of each change
    engine = SchedulingEngine(
        database=db,
        tasks=TaskStore(db),
        occurrences=OccurrenceStore(db),
        lock=lock or lock_for(db),
        lease=lease_for(db),
        clock=clock,
        replica_id=name,
        reconcile_interval_s=interval_s,
        retry_interval_s=0.05,
        on_enqueued=lambda: wakeups.append(1),
        horizon_s=horizon_s,
        monotonic=monotonic,
        grace_s=grace_s,
        max_catchup_rows=max_catchup_rows,
        lead_s=lead_s,
    )
    store = TaskStore(db, on_change=engine.task_changed)
    service = Tasks(store, ExecutionStore(db), handler_registry(Settings()), clock)
    return Replica(engine, service, wakeups)


def register(
    replica: Replica,
    name: str,
    schedule: str,
    *,
    overlap: OverlapPolicy = OverlapPolicy.ALLOW,
    window: timedelta = timedelta(hours=1),
) -> Task:
    return replica.tasks.register(
        None,
        NewTask(
            name=name,
            schedule=schedule,
            handler="http",
            metadata={"url": "http://127.0.0.1:9/"},
            overlap_policy=overlap,
            catchup_window=window,
        ),
    )


def rows(db: Engine, task: Task | None = None) -> list[Any]:
    query = "SELECT scheduled_for, status, error, trigger, attempt, due_at FROM task_executions"
    params: dict[str, Any] = {}
    if task is not None:
        query += " WHERE task_id = :t"
        params["t"] = task.id
    with db.connect() as conn:
        return list(conn.execute(text(query + " ORDER BY scheduled_for"), params))
