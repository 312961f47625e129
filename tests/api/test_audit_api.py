"""The audit trail, executions that outlive their task, and the execution view, over a real secured server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc
from sqlalchemy import update

from schedule_grpc.app import Replica
from schedule_grpc.domain.models import ExecutionStatus
from schedule_grpc.store.tables import task_executions
from tests.api.helpers import error_details
from tests.api.shim_support import AUTH_TOKENS, bearer, serve
from tests.executor_rows import ExecutorRows
from tests.support import FakeClock, Webhook

ALPHA, BETA, ADMIN = (tuple(bearer(t).items()) for t in ("alpha-secret", "beta-secret", "root-secret"))
TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/app/handler.py", line 3\nValueError: boom'


@pytest.fixture
def secured(database_url: str, clock: FakeClock) -> Iterator[Replica]:
    with serve(database_url, clock, auth_tokens=AUTH_TOKENS) as service:
        yield service


@pytest.fixture
def stub(secured: Replica) -> Iterator[pb_grpc.ScheduleServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        yield pb_grpc.ScheduleServiceStub(channel)


def _register(stub: pb_grpc.ScheduleServiceStub, name: str, url: str = "http://127.0.0.1:9/") -> pb.Task:
    metadata = struct_pb2.Struct()
    metadata.update({"url": url})
    request = pb.RegisterTaskRequest(name=name, schedule="*/5 * * * *", handler="http", metadata=metadata)
    return stub.RegisterTask(request, metadata=ALPHA).task


def _failed_with_traceback(service: Replica, clock: FakeClock, task: str) -> str:
    rows = ExecutorRows(service.database)
    execution_id = rows.run(task, clock.now() - timedelta(minutes=5), ExecutionStatus.FAILED)
    with service.database.begin() as conn:
        conn.execute(update(task_executions).where(task_executions.c.id == execution_id).values(traceback=TRACEBACK))
    return execution_id


def test_unregistered_task_keeps_its_executions_and_the_trail_says_who_deleted_it(
    secured: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock
) -> None:
    _register(stub, "billing")
    rows = ExecutorRows(secured.database)
    failed = _failed_with_traceback(secured, clock, "billing")
    rows.dead_letter(failed, clock.now())
    pending = rows.queue("billing", clock.now() + timedelta(minutes=5))
    running = rows.queue("billing", clock.now() - timedelta(minutes=1))
    rows.start(running, clock.now())

    stub.UnregisterTask(pb.UnregisterTaskRequest(name="billing"), metadata=ALPHA)

    recent = stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(), metadata=ADMIN).executions
    assert {e.id: e.status for e in recent} == {
        failed: pb.EXECUTION_STATUS_FAILED,
        pending: pb.EXECUTION_STATUS_CANCELLED,  # it will not run for a task that is gone
        running: pb.EXECUTION_STATUS_RUNNING,  # it finishes and is recorded (cancel_running would stop it)
    }
    history = stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="billing"), metadata=ADMIN).history
    assert sorted(e.id for e in history) == sorted([running, pending, failed])
    letters = stub.ListDeadLetters(pb.ListDeadLettersRequest(task_name="billing"), metadata=ADMIN).dead_letters
    assert [d.execution_id for d in letters] == [failed]
    with pytest.raises(grpc.RpcError) as caught:
        stub.RedriveDeadLetter(pb.RedriveDeadLetterRequest(id=letters[0].id), metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(caught.value)[0] == "TASK_UNREGISTERED"
    stub.DiscardDeadLetter(pb.DiscardDeadLetterRequest(id=letters[0].id), metadata=ADMIN)

    entries = stub.ListAuditEntries(pb.ListAuditEntriesRequest(task_name="billing"), metadata=ADMIN).entries
    assert [(e.action, e.actor) for e in entries] == [
        (pb.AUDIT_ACTION_DEAD_LETTER_DISCARDED, "ops"),
        (pb.AUDIT_ACTION_UNREGISTERED, "alpha"),
        (pb.AUDIT_ACTION_REGISTERED, "alpha"),
    ]
    discarded, unregistered, registered = entries
    assert discarded.subject_id == letters[0].id
    assert unregistered.before["schedule"] == "*/5 * * * *" and not unregistered.HasField("after")
    assert registered.after["name"] == "billing" and not registered.HasField("before")
    assert unregistered.occurred_at.ToDatetime().replace(tzinfo=clock.now().tzinfo) == clock.now()


def test_unregistering_with_cancel_running_stops_the_running_execution_too(
    secured: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock
) -> None:
    _register(stub, "billing")
    rows = ExecutorRows(secured.database)
    running = rows.queue("billing", clock.now() - timedelta(minutes=1))
    rows.start(running, clock.now())

    stub.UnregisterTask(pb.UnregisterTaskRequest(name="billing", cancel_running=True), metadata=ALPHA)

    recent = stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(), metadata=ADMIN).executions
    assert {e.id: e.status for e in recent} == {running: pb.EXECUTION_STATUS_CANCELLED}


def test_each_change_is_recorded_with_before_and_after_and_listed_by_filter_a_page_at_a_time(
    secured: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, webhook: Webhook
) -> None:
    _register(stub, "report", url=webhook.url)
    clock.advance(timedelta(minutes=1))
    stub.DisableTask(pb.DisableTaskRequest(name="report"), metadata=ALPHA)
    clock.advance(timedelta(minutes=1))
    stub.EnableTask(pb.EnableTaskRequest(name="report"), metadata=ADMIN)
    run = stub.RunTaskNow(pb.RunTaskNowRequest(name="report"), metadata=ALPHA, timeout=30)

    everything = stub.ListAuditEntries(pb.ListAuditEntriesRequest(), metadata=ADMIN).entries
    assert [e.action for e in everything] == [
        pb.AUDIT_ACTION_RUN_NOW,
        pb.AUDIT_ACTION_ENABLED,
        pb.AUDIT_ACTION_DISABLED,
        pb.AUDIT_ACTION_REGISTERED,
    ]
    ran, enabled, disabled, _ = everything
    assert ran.subject_id == run.execution.id and ran.actor == "alpha"
    assert disabled.before["enabled"] is True and disabled.after["enabled"] is False
    assert enabled.actor == "ops" and enabled.after["enabled"] is True

    by_admin = stub.ListAuditEntries(pb.ListAuditEntriesRequest(actor="ops"), metadata=ADMIN).entries
    assert [e.action for e in by_admin] == [pb.AUDIT_ACTION_ENABLED]
    toggles = pb.ListAuditEntriesRequest(actions=[pb.AUDIT_ACTION_ENABLED, pb.AUDIT_ACTION_DISABLED], page_size=1)
    first = stub.ListAuditEntries(toggles, metadata=ADMIN)
    toggles.page_token = first.next_page_token
    second = stub.ListAuditEntries(toggles, metadata=ADMIN)
    assert [e.id for e in [*first.entries, *second.entries]] == [enabled.id, disabled.id]
    assert second.next_page_token == ""

    with pytest.raises(grpc.RpcError) as caught:
        stub.ListAuditEntries(pb.ListAuditEntriesRequest(), metadata=ALPHA)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(caught.value)[0] == "ADMIN_ONLY"

    with httpx.Client(base_url=f"http://127.0.0.1:{secured.http_port}", timeout=30) as http:
        shown = http.get("/api/audit", params={"actions": "disabled"}, headers=dict(ADMIN)).json()
        assert shown["count"] == 1 and shown["entries"][0]["actor"] == "alpha"
        assert shown["entries"][0]["action"] == "disabled" and shown["entries"][0]["after"]["enabled"] is False
        refused = http.get("/api/audit", headers=dict(BETA))
        assert refused.status_code == 403


def test_listings_leave_tracebacks_out_unless_the_owner_or_an_admin_asks_for_the_full_view(
    secured: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock
) -> None:
    _register(stub, "flaky")
    _failed_with_traceback(secured, clock, "flaky")
    basic = stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="flaky"), metadata=ALPHA).history[0]
    assert basic.error == "boom" and basic.traceback == ""
    full = pb.GetTaskHistoryRequest(name="flaky", view=pb.EXECUTION_VIEW_FULL)
    assert stub.GetTaskHistory(full, metadata=ALPHA).history[0].traceback == TRACEBACK
    assert stub.GetTaskHistory(full, metadata=ADMIN).history[0].traceback == TRACEBACK
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetTaskHistory(full, metadata=BETA)
    assert error_details(caught.value)[0] == "FULL_VIEW_NOT_ALLOWED"
    recent = pb.GetRecentExecutionsRequest(view=pb.EXECUTION_VIEW_FULL)
    assert stub.GetRecentExecutions(recent, metadata=ADMIN).executions[0].traceback == TRACEBACK
    assert stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(), metadata=BETA).executions[0].traceback == ""
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetRecentExecutions(recent, metadata=ALPHA)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    with httpx.Client(base_url=f"http://127.0.0.1:{secured.http_port}", timeout=30) as http:
        listed = http.get("/api/tasks/flaky/history", headers=dict(ALPHA)).json()["history"][0]
        assert "traceback" not in listed and listed["error"] == "boom"
        fully = http.get("/api/tasks/flaky/history", params={"view": "full"}, headers=dict(ALPHA)).json()
        assert fully["history"][0]["traceback"] == TRACEBACK
        bad = http.get("/api/executions", params={"view": "everything"}, headers=dict(ADMIN)).json()
        assert bad["reason"] == "BAD_QUERY_PARAMETER" and bad["error"].startswith("view:")
