"""The retention run: what it deletes, and that it says when it stopped short."""

from __future__ import annotations

from datetime import timedelta

from schedule_grpc.domain.models import ExecutionStatus
from schedule_grpc.usecases.retention import Retention, RetentionPolicy
from tests.fakes import MemoryHistoryDeletion
from tests.unit.usecases.world import ALPHA, build, hook


def test_old_finished_executions_go_and_a_task_may_keep_its_own_longer_or_shorter() -> None:
    world = build()
    default = world.tasks.register(ALPHA, hook("default"))
    brief = world.tasks.register(ALPHA, hook("brief", history_retention=timedelta(days=1)))
    old = [world.execution(t, ExecutionStatus.SUCCESS) for t in (default, brief)]
    stuck = world.execution(default, ExecutionStatus.PENDING)
    world.clock.advance(timedelta(days=2))
    recent = [world.execution(t, ExecutionStatus.FAILED) for t in (default, brief)]
    world.clock.advance(timedelta(days=1))
    store = MemoryHistoryDeletion(world.memory)
    deleted: list[tuple[str, int]] = []
    policy = RetentionPolicy(executions=timedelta(days=2, hours=12), batch_size=10)
    report = Retention(store, store, policy, world.clock, on_deleted=lambda t, n: deleted.append((t, n))).run()
    kept = set(world.memory.executions)
    assert old[0].id not in kept and old[1].id not in kept and recent[1].id not in kept
    assert {stuck.id, recent[0].id} <= kept  # pending, and within the service-wide retention
    assert report.task_executions == 3 and report.complete
    assert sum(n for table, n in deleted if table == "task_executions") == 3


def test_a_run_that_reaches_its_batch_budget_says_it_is_not_complete() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    for _ in range(5):
        world.execution(task, ExecutionStatus.SUCCESS)
    world.clock.advance(timedelta(days=100))
    store = MemoryHistoryDeletion(world.memory)
    policy = RetentionPolicy(batch_size=2, max_batches=2)
    report = Retention(store, store, policy, world.clock).run()
    assert report.task_executions == 4 and not report.complete
    assert len(world.memory.executions) == 1
