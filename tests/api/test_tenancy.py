"""Callers touch only what is theirs: the reproductions of the tenancy report, on SQLite and Postgres,
over a real server with two ``service`` callers (alpha, beta) and one ``admin`` (ops)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc
from sqlalchemy import create_engine, func, select

from schedule_grpc.app import Replica
from schedule_grpc.store.tables import scheduled_tasks
from tests.api.helpers import error_details
from tests.api.shim_support import AUTH_TOKENS, bearer, serve
from tests.support import FakeClock

ALPHA, BETA, ADMIN = "alpha-secret", "beta-secret", "root-secret"


@pytest.fixture
def secured(database_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[Replica]:
    with serve(database_url, clock, auth_tokens=AUTH_TOKENS, backup_dir=str(tmp_path / "backups")) as service:
        yield service


@pytest.fixture
def stub(secured: Replica) -> Iterator[pb_grpc.ScheduleServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        yield pb_grpc.ScheduleServiceStub(channel)


def _as(token: str) -> tuple[tuple[str, str], ...]:
    return tuple(bearer(token).items())


def _register(
    stub: pb_grpc.ScheduleServiceStub, token: str, name: str, handler: str, metadata: dict[str, Any], **fields: Any
) -> pb.Task:
    struct = struct_pb2.Struct()
    struct.update(metadata)
    request = pb.RegisterTaskRequest(name=name, schedule="@daily", handler=handler, metadata=struct, **fields)
    return stub.RegisterTask(request, metadata=_as(token)).task


def _refused(call: Any) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), error_details(caught.value)[0], caught.value.details() or ""


def _task_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(scheduled_tasks)).scalar_one())
    finally:
        engine.dispose()


CLEANUP_TASKS = {"table": "scheduled_tasks", "keyColumn": "id", "timeColumn": "created_at", "maxAgeDays": 0}


def test_no_caller_can_point_a_data_handler_at_the_services_own_tables(
    stub: pb_grpc.ScheduleServiceStub, database_url: str
) -> None:
    _register(stub, ALPHA, "mine", "http", {"url": "https://example.com/hook"})
    before = _task_rows(database_url)
    # A service caller may not schedule a data handler at all.
    code, reason, _ = _refused(lambda: _register(stub, ALPHA, "wipe", "cleanup-old-generations", CLEANUP_TASKS))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ADMIN_ONLY_HANDLER")
    # An admin may, but not on the service's tables, a system catalog, or another schema.
    code, _, details = _refused(lambda: _register(stub, ADMIN, "wipe", "cleanup-old-generations", CLEANUP_TASKS))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("metadata.table:")
    assert "own tables" in details
    for table in ("SCHEDULED_TASKS", "public.task_executions", "main.dead_letters"):
        metadata = {**CLEANUP_TASKS, "table": table}
        code, _, _ = _refused(lambda m=metadata: _register(stub, ADMIN, "wipe", "cleanup-old-generations", m))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _, details = _refused(
        lambda: _register(stub, ADMIN, "peek", "update-analytics", {"tables": ["pg_catalog.pg_authid"]})
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("metadata.tables[0]:")
    code, _, details = _refused(
        lambda: _register(stub, ADMIN, "embed", "generate-missing-embeddings", {"table": "sessions"})
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not one this handler may touch" in details
    # The platform's own tables still work for an admin, and nothing was written by the refusals.
    assert _register(stub, ADMIN, "gens", "cleanup-old-generations", {"maxAgeDays": 0}).handler
    assert _task_rows(database_url) == before + 1
    assert [t.name for t in stub.ListTasks(pb.ListTasksRequest(), metadata=_as(ADMIN)).tasks] == ["gens", "mine"]


def test_secrets_in_metadata_are_write_only_and_other_services_see_no_metadata(
    stub: pb_grpc.ScheduleServiceStub,
) -> None:
    metadata = {
        "url": "https://svc:hunter2pw@billing.example.com/hook?api_key=k3y-zz9&page=2",
        "headers": {"Authorization": "Bearer tok-51", "X-Trace": "visible"},
    }
    _register(stub, ALPHA, "billing", "http", metadata)
    mine = json_format.MessageToDict(stub.GetTask(pb.GetTaskRequest(name="billing"), metadata=_as(ALPHA)).task)
    assert mine["metadata"]["headers"] == {"Authorization": "<redacted>", "X-Trace": "visible"}
    assert mine["metadata"]["url"] == "https://<redacted>@billing.example.com/hook?api_key=<redacted>&page=2"
    theirs = stub.GetTask(pb.GetTaskRequest(name="billing"), metadata=_as(BETA)).task
    assert theirs.name == "billing" and theirs.schedule == "@daily" and theirs.owner == "alpha"
    assert json_format.MessageToDict(theirs.metadata) == {}
    for token in (ALPHA, BETA, ADMIN):
        text = str(stub.ListTasks(pb.ListTasksRequest(), metadata=_as(token)))
        assert "hunter2pw" not in text and "k3y-zz9" not in text and "tok-51" not in text


def test_default_and_retention_names_are_reserved_for_admins(
    stub: pb_grpc.ScheduleServiceStub, database_url: str
) -> None:
    before = _task_rows(database_url)
    for name in ("backup-database", "cleanup-execution-history", "cleanup-expired-sessions"):
        code, reason, details = _refused(
            lambda n=name: _register(stub, ALPHA, n, "http", {"url": "https://example.com/"}, enabled=False)
        )
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "RESERVED_NAME") and details.startswith("name:")
    assert _task_rows(database_url) == before
    installed = stub.InitializeDefaultTasks(pb.InitializeDefaultTasksRequest(), metadata=_as(ADMIN)).tasks
    assert len(installed) == 13 and all(t.handler == t.name for t in installed)


def test_memory_and_timeout_are_capped_by_the_operator(stub: pb_grpc.ScheduleServiceStub, database_url: str) -> None:
    before = _task_rows(database_url)
    code, _, details = _refused(
        lambda: _register(stub, ALPHA, "big", "http", {"url": "https://example.com/"}, memory_limit_mb=65536)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("memory_limit_mb:")
    assert "SCHEDULE_MAX_MEMORY_LIMIT_MB" in details
    from google.protobuf import duration_pb2

    long = duration_pb2.Duration(seconds=7 * 3600)
    code, _, details = _refused(
        lambda: _register(stub, ALPHA, "long", "http", {"url": "https://x.example/"}, timeout=long)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("timeout:")
    assert _task_rows(database_url) == before


def test_backups_are_an_admin_matter_and_readable_by_their_owner_only(
    stub: pb_grpc.ScheduleServiceStub, tmp_path: Path, database_url: str
) -> None:
    code, reason, _ = _refused(lambda: _register(stub, ALPHA, "snap", "backup-database", {"keep": 1}))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ADMIN_ONLY_HANDLER")
    if database_url.startswith("postgresql"):
        return  # pg_dump may be absent on this host; the file mode is the same code path
    _register(stub, ADMIN, "snap", "backup-database", {"keep": 2})
    answer = stub.RunTaskNow(pb.RunTaskNowRequest(name="snap"), metadata=_as(ADMIN), timeout=60)
    assert answer.success, answer.message
    files = sorted((tmp_path / "backups").iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE((tmp_path / "backups").stat().st_mode) == 0o700


def test_other_services_see_outcomes_but_not_results_or_errors(stub: pb_grpc.ScheduleServiceStub) -> None:
    _register(stub, ALPHA, "ping", "http", {"url": "http://127.0.0.1:9/unreachable"})
    ran = stub.RunTaskNow(pb.RunTaskNowRequest(name="ping"), metadata=_as(ALPHA), timeout=60)
    assert not ran.success and ran.execution.error
    mine = stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="ping"), metadata=_as(ALPHA)).history
    theirs = stub.GetTaskHistory(pb.GetTaskHistoryRequest(name="ping"), metadata=_as(BETA)).history
    assert mine[0].error and mine[0].traceback is not None
    assert theirs[0].status == mine[0].status and theirs[0].error_category == mine[0].error_category
    assert theirs[0].error == "" and theirs[0].traceback == ""
    recent = stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(), metadata=_as(BETA)).executions
    assert [e.error for e in recent] == [""]
    # A service caller cannot run, change or delete another's task.
    code, reason, _ = _refused(lambda: stub.RunTaskNow(pb.RunTaskNowRequest(name="ping"), metadata=_as(BETA)))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")


def _watch_events(stub: pb_grpc.ScheduleServiceStub, token: str, cursor: str, count: int) -> list[pb.ExecutionEvent]:
    """Events from ``cursor`` until ``count`` arrived or the stream went quiet (its heartbeat)."""
    call = stub.WatchExecutions(pb.WatchExecutionsRequest(cursor=cursor), metadata=_as(token), timeout=20)
    events: list[pb.ExecutionEvent] = []
    try:
        for message in call:
            if not message.HasField("event"):
                break  # a cursor alone: everything up to now was sent
            events.append(message.event)
            if len(events) == count:
                break
    finally:
        call.cancel()  # type: ignore[no-untyped-call]
    return events


def test_a_service_watches_the_events_of_its_own_tasks_only(database_url: str, clock: FakeClock) -> None:
    with (
        serve(database_url, clock, auth_tokens=AUTH_TOKENS, watch_heartbeat_s=0.5) as service,
        grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = pb_grpc.ScheduleServiceStub(channel)
        start = next(iter(stub.WatchExecutions(pb.WatchExecutionsRequest(), metadata=_as(ADMIN), timeout=10)))
        for token, name in ((ALPHA, "alpha-ping"), (BETA, "beta-ping")):
            _register(stub, token, name, "http", {"url": "http://127.0.0.1:9/"})
            stub.RunTaskNow(pb.RunTaskNowRequest(name=name), metadata=_as(token), timeout=60)
        everything = _watch_events(stub, ADMIN, start.cursor, 100)
        betas = _watch_events(stub, BETA, start.cursor, 100)
    assert {e.task_name for e in everything} == {"alpha-ping", "beta-ping"}
    assert betas and {e.task_name for e in betas} == {"beta-ping"}
    assert len(betas) == sum(1 for e in everything if e.task_name == "beta-ping")


def test_a_task_cannot_call_the_services_own_listeners_even_with_loopback_allowed(
    database_url: str, clock: FakeClock
) -> None:
    from tests.handler_support import JsonServer, apis_guru_list

    source = JsonServer()
    source.routes["/v2/list.json"] = lambda _q, _b: (200, apis_guru_list(3))
    settings: dict[str, Any] = {"auth_tokens": AUTH_TOKENS, "metrics_address": "127.0.0.1:0"}
    try:
        with (
            serve(database_url, clock, egress_allow="127.0.0.0/8", **settings) as service,
            grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel,
        ):
            stub = pb_grpc.ScheduleServiceStub(channel)
            own = {
                "metrics": f"http://127.0.0.1:{service.metrics_port}/metrics",
                "shim": f"http://127.0.0.1:{service.http_port}/api/tasks",
            }
            for which, url in own.items():
                _register(stub, ADMIN, f"own-{which}", "import-public-apis", {"url": url})
                ran = stub.RunTaskNow(pb.RunTaskNowRequest(name=f"own-{which}"), metadata=_as(ADMIN), timeout=60)
                assert not ran.success and ran.execution.error_category == pb.ERROR_CATEGORY_POLICY
                assert "one of this service's own listeners" in ran.execution.error
            # An allowed loopback target still works.
            _register(stub, ADMIN, "apis", "import-public-apis", {"url": f"{source.base}/v2/list.json"})
            ran = stub.RunTaskNow(pb.RunTaskNowRequest(name="apis"), metadata=_as(ADMIN), timeout=60)
            assert ran.success, ran.message
    finally:
        source.close()
