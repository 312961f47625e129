"""Registering, changing and running tasks, as each kind of caller (service, admin, open) sees it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schedule_grpc.domain.audit import AuditAction
from schedule_grpc.domain.errors import (
    AlreadyExists,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from schedule_grpc.domain.models import ExecutionStatus, Trigger
from schedule_grpc.usecases.quota import Quota
from schedule_grpc.usecases.tenancy import Limits
from tests.unit.usecases.world import ADMIN, ALPHA, BETA, OPEN, build, hook


def test_a_registered_task_belongs_to_its_caller_and_is_due_at_its_next_fire_time() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    assert task.owner == "alpha" and task.enabled
    assert task.next_run == world.clock.now().replace(minute=0, second=0) + timedelta(hours=1)
    assert world.tasks.get(ALPHA, "ping") == task
    assert world.tasks.register(OPEN, hook("open-one")).owner is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"handler": "nope"}, "handler"),
        ({"metadata": {}}, "metadata.url"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_a_wrong_field_is_named_and_nothing_is_written(fields: dict[str, object], field: str) -> None:
    world = build()
    with pytest.raises(InvalidArgument) as raised:
        world.tasks.register(ALPHA, hook("ping", **fields))
    assert raised.value.field == field
    assert world.tasks.list(ADMIN, page_size=0, page_token="").items == []
    assert world.memory.audit == []


def test_a_taken_name_is_refused() -> None:
    world = build()
    world.tasks.register(ALPHA, hook("ping"))
    with pytest.raises(AlreadyExists):
        world.tasks.register(BETA, hook("ping"))


def test_a_service_neither_schedules_data_handlers_nor_takes_reserved_names() -> None:
    world = build()
    with pytest.raises(PermissionDenied) as raised:
        world.tasks.register(ALPHA, hook("mine", handler="update-analytics", metadata={}))
    assert raised.value.reason == "ADMIN_ONLY_HANDLER"
    with pytest.raises(PermissionDenied) as raised:
        world.tasks.register(ALPHA, hook("update-analytics"))
    assert raised.value.reason == "RESERVED_NAME"
    assert world.tasks.register(ADMIN, hook("mine", handler="update-analytics", metadata={})).owner == "ops"
    assert world.tasks.register(OPEN, hook("update-analytics")).owner is None


def test_the_operators_caps_apply_to_everyone() -> None:
    world = build(limits=Limits(max_memory_limit_mb=256, max_timeout=timedelta(minutes=1)))
    for caller in (ALPHA, ADMIN, OPEN):
        with pytest.raises(InvalidArgument) as raised:
            world.tasks.register(caller, hook("big", memory_limit_mb=512))
        assert raised.value.field == "memory_limit_mb"
        with pytest.raises(InvalidArgument) as raised:
            world.tasks.register(caller, hook("slow", timeout=timedelta(minutes=2)))
        assert raised.value.field == "timeout"


def test_a_caller_past_its_quota_is_refused_until_it_unregisters_a_task() -> None:
    world = build(quota=Quota(max_tasks=2, max_metadata_bytes=10_000))
    world.tasks.register(ALPHA, hook("one"))
    world.tasks.register(ALPHA, hook("two"))
    with pytest.raises(ResourceExhausted):
        world.tasks.register(ALPHA, hook("three"))
    world.tasks.register(BETA, hook("theirs"))  # the quota is per caller
    world.tasks.unregister(ALPHA, "one")
    assert world.tasks.register(ALPHA, hook("three")).name == "three"


def test_metadata_beyond_the_quota_is_refused() -> None:
    world = build(quota=Quota(max_tasks=100, max_metadata_bytes=60))
    world.tasks.register(ALPHA, hook("small"))
    with pytest.raises(ResourceExhausted):
        world.tasks.register(ALPHA, hook("large", metadata={"url": "https://x.test/" + "a" * 40}))


def test_others_see_a_task_without_its_metadata_and_cannot_change_it() -> None:
    world = build()
    world.tasks.register(ALPHA, hook("ping"))
    assert world.tasks.get(BETA, "ping").metadata == {}
    assert world.tasks.get(ADMIN, "ping").metadata == {"url": "https://x.test/"}
    assert world.tasks.get(OPEN, "ping").metadata == {"url": "https://x.test/"}
    for change in (
        lambda: world.tasks.enable(BETA, "ping"),
        lambda: world.tasks.disable(BETA, "ping"),
        lambda: world.tasks.unregister(BETA, "ping"),
        lambda: world.tasks.run_now(BETA, "ping"),
    ):
        with pytest.raises(PermissionDenied) as raised:
            change()
        assert raised.value.reason == "NOT_OWNER"
    assert world.tasks.disable(ADMIN, "ping").enabled is False
    assert world.tasks.enable(OPEN, "ping").enabled is True


def test_a_task_made_while_open_is_changed_by_admins_only_once_credentials_exist() -> None:
    world = build()
    world.tasks.register(OPEN, hook("legacy"))
    with pytest.raises(PermissionDenied):
        world.tasks.disable(ALPHA, "legacy")
    assert world.tasks.disable(ADMIN, "legacy").enabled is False


def test_disabling_cancels_scheduled_and_retry_executions_but_not_a_waiting_manual_run() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    scheduled = world.execution(task, ExecutionStatus.PENDING)
    retry = world.execution(task, ExecutionStatus.PENDING, trigger=Trigger.RETRY, attempt=2)
    manual = world.execution(task, ExecutionStatus.PENDING, trigger=Trigger.MANUAL)
    running = world.execution(task, ExecutionStatus.RUNNING)
    disabled = world.tasks.disable(ALPHA, "ping")
    assert disabled.enabled is False and disabled.next_run is None
    status = {e.id: e.status for e in world.memory.executions.values()}
    assert status[scheduled.id] is status[retry.id] is ExecutionStatus.CANCELLED
    assert status[manual.id] is ExecutionStatus.PENDING
    assert status[running.id] is ExecutionStatus.RUNNING  # it finishes, and is not retried
    assert world.executor.cancelled == []


def test_disabling_with_cancel_running_stops_the_running_execution() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    running = world.execution(task, ExecutionStatus.RUNNING)
    world.tasks.disable(ALPHA, "ping", cancel_running=True)
    assert world.memory.executions[running.id].status is ExecutionStatus.CANCELLED
    assert world.executor.cancelled == [running.id]


def test_enabling_again_schedules_from_now() -> None:
    world = build()
    world.tasks.register(ALPHA, hook("ping", enabled=False))
    world.clock.advance(timedelta(hours=5, minutes=30))
    enabled = world.tasks.enable(ALPHA, "ping")
    assert enabled.next_run == world.clock.now().replace(minute=0, second=0) + timedelta(hours=1)


def test_an_unregistered_task_is_gone_but_admins_still_read_its_history_by_name() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    done = world.execution(task, ExecutionStatus.SUCCESS)
    pending = world.execution(task, ExecutionStatus.PENDING)
    world.tasks.unregister(ALPHA, "ping")
    with pytest.raises(NotFound):
        world.tasks.get(ALPHA, "ping")
    with pytest.raises(NotFound):
        world.tasks.unregister(ALPHA, "ping")
    history = world.tasks.history(ADMIN, "ping", limit=0, page_token="")
    assert [e.id for e in history.items] == [pending.id, done.id]
    with pytest.raises(NotFound):  # whose it was is gone with the task: a service is not told
        world.tasks.history(ALPHA, "ping", limit=0, page_token="")
    assert history.items[0].status is ExecutionStatus.CANCELLED


def test_run_now_waits_for_the_executor_and_returns_the_outcome() -> None:
    world = build(outcome=ExecutionStatus.FAILED)
    world.tasks.register(ALPHA, hook("ping"))
    execution = world.tasks.run_now(ALPHA, "ping", wait_s=10.0)
    assert execution.status is ExecutionStatus.FAILED and execution.trigger is Trigger.MANUAL
    assert world.executor.wakes == 1


def test_run_now_answers_deadline_exceeded_when_the_caller_goes_away_and_the_run_goes_on() -> None:
    world = build(outcome=None)  # the executor is busy: the execution stays pending
    world.tasks.register(ALPHA, hook("ping"))
    with pytest.raises(DeadlineExceeded) as raised:
        world.tasks.run_now(ALPHA, "ping", wait_s=10.0, is_active=lambda: False)
    assert raised.value.reason == "EXECUTION_NOT_FINISHED"
    [queued] = world.tasks.history(ALPHA, "ping", limit=0, page_token="").items
    assert queued.status is ExecutionStatus.PENDING and queued.id in str(raised.value)


def test_run_now_without_an_executor_runs_the_handler_in_the_calling_thread() -> None:
    world = build(queued=False)
    world.tasks.register(ALPHA, hook("ping"))
    world.tasks.register(ALPHA, hook("broken", metadata={"url": "https://x.test/", "fail": True}))
    done = world.tasks.run_now(ALPHA, "ping")
    assert done.status is ExecutionStatus.SUCCESS and done.result == {"called": "https://x.test/"}
    assert world.tasks.find("ping") is not None and world.tasks.find("ping").last_run == world.clock.now()  # type: ignore[union-attr]
    failed = world.tasks.run_now(ALPHA, "broken")
    assert failed.status is ExecutionStatus.FAILED and failed.error == "the receiver answered 500"


def test_tasks_are_listed_in_name_order_page_by_page_with_others_metadata_hidden() -> None:
    world = build()
    for name in ("e", "c", "a", "d", "b"):
        world.tasks.register(ALPHA if name != "c" else BETA, hook(name))
    names: list[str] = []
    token = ""
    pages = 0
    while True:
        page = world.tasks.list(BETA, page_size=2, page_token=token)
        names += [t.name for t in page.items]
        assert all((t.metadata == {}) == (t.owner != "beta") for t in page.items)
        pages += 1
        token = page.next_token
        if not token:
            break
    assert names == ["a", "b", "c", "d", "e"] and pages == 3
    with pytest.raises(InvalidArgument) as raised:
        world.tasks.list(BETA, page_size=2, page_token="garbage")
    assert raised.value.field == "page_token"


def test_changes_are_written_to_the_audit_trail_with_who_made_them() -> None:
    world = build()
    world.tasks.register(ALPHA, hook("ping"))
    world.tasks.disable(ADMIN, "ping")
    world.tasks.enable(ALPHA, "ping")
    execution = world.tasks.run_now(ALPHA, "ping", wait_s=10.0)
    world.tasks.unregister(OPEN, "ping")
    trail = [(e.action, e.actor) for e in reversed(world.memory.audit)]
    assert trail == [
        (AuditAction.UNREGISTERED, None),
        (AuditAction.RUN_NOW, "alpha"),
        (AuditAction.ENABLED, "alpha"),
        (AuditAction.DISABLED, "ops"),
        (AuditAction.REGISTERED, "alpha"),
    ]
    assert world.memory.audit[3].subject_id == execution.id
    disabled = world.memory.audit[1]
    assert disabled.before is not None and disabled.before["enabled"] is True
    assert disabled.after is not None and disabled.after["enabled"] is False


def test_default_tasks_are_installed_once_and_a_changed_one_is_kept() -> None:
    world = build()
    installed = world.tasks.initialize_defaults(ADMIN)
    assert len(installed) == 13 and all(t.owner == "ops" for t in installed)
    world.tasks.disable(ADMIN, "backup-database")
    again = world.tasks.initialize_defaults(ADMIN)
    assert [t.id for t in again] == [t.id for t in installed]
    assert not next(t for t in again if t.name == "backup-database").enabled
