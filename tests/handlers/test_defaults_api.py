"""Over a real server: ListHandlers, InitializeDefaultTasks, and all 13 default tasks run once through
RunTaskNow against real data and loopback sources."""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc
from sqlalchemy import insert

from schedule_grpc.app import build
from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.settings import Settings
from schedule_grpc.store import db
from schedule_grpc.store.platform_tables import document_chunks, entities, sessions
from tests.handler_support import EmbeddingsEndpoint, GrpcTestServer, JsonServer, McpRegistry, apis_guru_list, mcp_entry
from tests.support import FakeClock

SEED_HANDLERS = [
    "cleanup-expired-sessions", "cleanup-expired-api-keys", "cleanup-old-generations",
    "generate-missing-embeddings", "generate-missing-chunk-embeddings", "update-analytics", "backup-database",
    "health-check-services", "check-rate-limits", "import-mcp-servers", "import-public-apis",
    "import-all-sources", "verify-imported-data",
]  # fmt: skip


@pytest.fixture
def stub_with_sources(
    database_url: str, clock: FakeClock, tmp_path: Path, json_server: JsonServer, grpc_server: GrpcTestServer
) -> Iterator[pb_grpc.ScheduleServiceStub]:
    json_server.routes["/v1/embeddings"] = EmbeddingsEndpoint()
    json_server.routes["/v0/servers"] = McpRegistry([mcp_entry(i) for i in range(25)])
    json_server.routes["/v2/list.json"] = lambda _q, _b: (200, apis_guru_list(8))
    json_server.routes["/healthz"] = lambda _q, _b: (200, {"ok": True})
    settings = Settings(
        database_url=database_url,
        grpc_address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",  # not the fixed default port: test runs may overlap
        migrate_on_start=False,
        engine_enabled=False,  # the engine keeps wall-clock time; each default runs once, through RunTaskNow
        embeddings_url=f"{json_server.base}/v1/embeddings",
        backup_dir=str(tmp_path / "backups"),
        health_check_targets=f"billing=grpc://{grpc_server.target},web={json_server.base}/healthz",
        mcp_registry_url=json_server.base,
        public_apis_url=f"{json_server.base}/v2/list.json",
        egress_allow="127.0.0.0/8,::1",  # the sources are loopback servers
    )
    service = build(settings, clock=clock)
    service.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            yield pb_grpc.ScheduleServiceStub(channel)
    finally:
        service.stop()


def test_list_handlers_names_describes_and_categorises_each(stub: pb_grpc.ScheduleServiceStub) -> None:
    response = stub.ListHandlers(pb.ListHandlersRequest())
    assert set(response.handlers) == {*SEED_HANDLERS, "http", "grpc", "cleanup-execution-history"} and list(
        response.handlers
    ) == sorted(response.handlers)
    details = {h.name: h for h in response.handler_details}
    assert details["cleanup-expired-sessions"].category == "cleanup"
    assert details["grpc"].category == "integration" and "reflection" in details["grpc"].description
    assert {h.category for h in response.handler_details} == {
        "cleanup",
        "ai",
        "analytics",
        "monitoring",
        "imports",
        "maintenance",
        "integration",
    }


def test_initialize_default_tasks_is_idempotent_and_keeps_what_a_user_changed(
    stub: pb_grpc.ScheduleServiceStub,
) -> None:
    first = stub.InitializeDefaultTasks(pb.InitializeDefaultTasksRequest())
    assert first.message == "Default tasks initialized"
    schedules = {t.name: t.schedule for t in first.tasks}
    assert schedules["health-check-services"] == "*/5 * * * *" and schedules["import-all-sources"] == "0 4 * * 0"
    assert schedules["cleanup-expired-sessions"] == "@hourly" and schedules["cleanup-old-generations"] == "@weekly"
    assert all(t.enabled and t.handler == t.name for t in first.tasks)
    assert first.tasks[0].metadata["category"] == "cleanup"

    stub.DisableTask(pb.DisableTaskRequest(name="backup-database"))
    stub.UnregisterTask(pb.UnregisterTaskRequest(name="check-rate-limits"))
    second = stub.InitializeDefaultTasks(pb.InitializeDefaultTasksRequest())
    tasks = {t.name: t for t in stub.ListTasks(pb.ListTasksRequest()).tasks}
    assert len(tasks) == 13 and len(second.tasks) == 13
    assert tasks["backup-database"].enabled is False  # the user's change stands
    assert tasks["cleanup-expired-sessions"].id == first.tasks[0].id


def test_all_13_defaults_run_once_through_run_task_now(
    stub_with_sources: pb_grpc.ScheduleServiceStub, database_url: str, clock: FakeClock
) -> None:
    engine = db.make_engine(database_url)
    now = clock.now()
    with engine.begin() as conn:
        conn.execute(
            insert(sessions),
            [
                {"id": f"s{i}", "user_id": "u", "created_at": now, "expires_at": now.replace(year=2025)}
                for i in range(4)
            ],
        )
        conn.execute(
            insert(entities), [{"id": f"e{i}", "type": "t", "name": "n", "content": f"c{i}"} for i in range(3)]
        )
        conn.execute(insert(document_chunks), [{"id": "c1", "document_id": "d", "chunk_index": 0, "content": "x"}])
    engine.dispose()
    stub = stub_with_sources
    stub.InitializeDefaultTasks(pb.InitializeDefaultTasksRequest())
    results = {}
    for name in SEED_HANDLERS:  # the seed's order: imports before their verification
        response = stub.RunTaskNow(pb.RunTaskNowRequest(name=name))
        assert response.success, f"{name}: {response.message}"
        results[name] = json_format.MessageToDict(response.execution.result)
    assert results["cleanup-expired-sessions"]["deletedSessions"] == 4
    assert results["generate-missing-embeddings"]["embedded"] == 3
    assert results["generate-missing-chunk-embeddings"]["embedded"] == 1
    assert results["update-analytics"]["tasks"]["total"] == 13
    assert Path(results["backup-database"]["file"]).exists()
    assert results["health-check-services"]["up"] == 2
    assert (
        results["import-mcp-servers"]["fetched"] == 25 and results["import-all-sources"]["publicApis"]["fetched"] == 8
    )
    assert results["verify-imported-data"]["ok"] is True
    history = stub.GetRecentExecutions(pb.GetRecentExecutionsRequest(limit=20)).executions
    assert len(history) == 13 and all(e.status == pb.EXECUTION_STATUS_SUCCESS for e in history)


def test_every_handler_pickles_for_a_worker_process() -> None:
    registry = handler_registry(Settings(health_check_targets="a=http://x/h", embeddings_url="http://e/v1/embeddings"))
    for handler in registry.all():
        copy = pickle.loads(pickle.dumps(handler))
        assert copy.name == handler.name and _state(copy) == _state(handler)


def test_plugins_add_handlers_through_the_entry_point_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "acme_handlers.py").write_text(
        "class Ping:\n"
        "    name = 'acme-ping'\n    description = 'Pings Acme.'\n    category = 'acme'\n"
        "    def __init__(self, settings):\n        self.timeout_s = settings.handler_http_timeout_s\n"
        "    def validate(self, metadata):\n        pass\n"
        "    def run(self, context):\n        return {'pinged': True}\n"
        "def broken(settings):\n    raise ValueError('no licence')\n"
    )
    info = tmp_path / "acme_handlers-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-handlers\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[schedule_grpc.handlers]\nping = acme_handlers:Ping\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = handler_registry(Settings(handler_http_timeout_s=7))
    plugin = registry.get("acme-ping")
    assert plugin is not None and plugin.category == "acme" and plugin.timeout_s == 7  # type: ignore[attr-defined]
    (info / "entry_points.txt").write_text("[schedule_grpc.handlers]\nbad = acme_handlers:broken\n")
    sys.modules.pop("acme_handlers", None)
    with pytest.raises(RuntimeError, match=r"handler plugin 'bad'.*no licence"):
        handler_registry(Settings())


def _struct(**values: object) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)  # type: ignore[arg-type]
    return s


def test_registration_rejects_bad_handler_metadata_naming_the_key(stub: pb_grpc.ScheduleServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.RegisterTask(
            pb.RegisterTaskRequest(
                name="sweep", schedule="@hourly", handler="cleanup-expired-sessions", metadata=_struct(table="x;y")
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata.table" in (caught.value.details() or "")
    assert json.dumps([t.name for t in stub.ListTasks(pb.ListTasksRequest()).tasks]) == "[]"


def _state(value: object) -> object:
    """A handler's attributes, nested handlers' too (sets pickle in any order, so bytes differ)."""
    if hasattr(value, "__dict__") and not hasattr(value, "__dataclass_fields__"):
        return {k: _state(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {k: _state(v) for k, v in value.items()}
    return value
