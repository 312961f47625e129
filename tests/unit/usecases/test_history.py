"""Reading executions: paging, filters, and the details each caller may see."""

from __future__ import annotations

import pytest

from schedule_grpc.domain.audit import AuditAction, AuditFilter
from schedule_grpc.domain.errors import InvalidArgument, NotFound, PermissionDenied
from schedule_grpc.domain.history import HistoryFilter
from schedule_grpc.domain.models import ExecutionStatus
from tests.unit.usecases.world import ADMIN, ALPHA, BETA, OPEN, World, build, hook


def _failed_runs() -> World:
    world = build()
    for owner, name in ((ALPHA, "mine"), (BETA, "theirs")):
        task = world.tasks.register(owner, hook(name))
        world.execution(task, ExecutionStatus.FAILED, error=f"{name} broke", traceback="Traceback ...")
        world.execution(task, ExecutionStatus.SUCCESS, result={"by": name})
    return world


def test_a_service_reads_others_history_without_results_or_errors() -> None:
    world = _failed_runs()
    theirs = world.tasks.history(ALPHA, "theirs", limit=0, page_token="").items
    assert [e.status for e in theirs] == [ExecutionStatus.SUCCESS, ExecutionStatus.FAILED]
    assert all(e.result is None and e.error is None and e.traceback is None for e in theirs)
    mine = world.tasks.history(ALPHA, "mine", limit=0, page_token="").items
    assert [e.result for e in mine] == [{"by": "mine"}, None] and mine[1].error == "mine broke"


def test_tracebacks_are_for_the_owner_and_admins() -> None:
    world = _failed_runs()
    assert world.tasks.history(ALPHA, "mine", limit=0, page_token="", full=True).items[1].traceback
    with pytest.raises(PermissionDenied) as raised:
        world.tasks.history(BETA, "mine", limit=0, page_token="", full=True)
    assert raised.value.reason == "FULL_VIEW_NOT_ALLOWED"
    with pytest.raises(PermissionDenied):
        world.tasks.recent(ALPHA, limit=0, page_token="", full=True)
    assert len(world.tasks.recent(ADMIN, limit=0, page_token="", full=True).items) == 4


def test_recent_executions_show_every_task_with_details_for_whom_may_see_them() -> None:
    world = _failed_runs()
    seen = world.tasks.recent(BETA, limit=0, page_token="").items
    assert [(e.task_name, e.status) for e in seen] == [
        ("theirs", ExecutionStatus.SUCCESS),
        ("theirs", ExecutionStatus.FAILED),
        ("mine", ExecutionStatus.SUCCESS),
        ("mine", ExecutionStatus.FAILED),
    ]
    assert [e.error for e in seen] == [None, "theirs broke", None, None]
    assert [e.error for e in world.tasks.recent(OPEN, limit=0, page_token="").items][-1] == "mine broke"


def test_history_is_filtered_and_paged_newest_first() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    made = [world.execution(task, ExecutionStatus.FAILED if i % 2 else ExecutionStatus.SUCCESS) for i in range(5)]
    failed = HistoryFilter(statuses={ExecutionStatus.FAILED})
    first = world.tasks.history(ALPHA, "ping", limit=1, page_token="", selector=failed)
    second = world.tasks.history(ALPHA, "ping", limit=1, page_token=first.next_token, selector=failed)
    assert [e.id for e in [*first.items, *second.items]] == [made[3].id, made[1].id]
    assert second.next_token == ""
    with pytest.raises(InvalidArgument) as raised:  # a token is only good for the listing it came from
        world.tasks.history(ALPHA, "ping", limit=1, page_token=first.next_token)
    assert raised.value.field == "page_token"
    with pytest.raises(NotFound):
        world.tasks.history(ALPHA, "never-was", limit=0, page_token="")


def test_the_audit_trail_is_listed_newest_first_by_actor() -> None:
    world = build()
    world.tasks.register(ALPHA, hook("one"))
    world.tasks.register(BETA, hook("two"))
    world.tasks.disable(ALPHA, "one")
    page = world.audit.list(AuditFilter(actor="alpha"), page_size=1, page_token="")
    rest = world.audit.list(AuditFilter(actor="alpha"), page_size=1, page_token=page.next_token)
    assert [(e.action, e.task_name) for e in [*page.items, *rest.items]] == [
        (AuditAction.DISABLED, "one"),
        (AuditAction.REGISTERED, "one"),
    ]
