"""The importers page through real HTTP fixtures, are idempotent, and write nothing when a page fails;
verify-imported-data fails with a report when the imported data does not hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, select, update

from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.handlers.base import HandlerFailed
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.settings import Settings
from schedule_grpc.store.platform_tables import import_runs, mcp_servers, public_apis
from tests.handler_support import JsonServer, McpRegistry, apis_guru_list, context, mcp_entry

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def _registry(database_url: str, server: JsonServer) -> HandlerRegistry:
    return handler_registry(
        Settings(
            database_url=database_url,
            mcp_registry_url=server.base,
            public_apis_url=f"{server.base}/v2/list.json",
            egress_allow="127.0.0.0/8",  # the sources are loopback servers
        )
    )


def _run(registry: HandlerRegistry, name: str, metadata: dict[str, object] | None = None, at: datetime = NOW):  # type: ignore[no-untyped-def]
    handler = registry.get(name)
    assert handler is not None
    return handler.run(context(name, metadata, at=at))


def test_mcp_servers_are_imported_from_every_page_once(
    database_url: str, engine: Engine, json_server: JsonServer
) -> None:
    entries = [mcp_entry(i) for i in range(23)]
    entries.insert(5, mcp_entry(3, latest=False, version="0.9.0"))  # an older version of server 3
    entries.append({"server": {"description": "no name"}})
    registry_fixture = McpRegistry(entries)
    json_server.routes["/v0/servers"] = registry_fixture
    registry = _registry(database_url, json_server)
    result = _run(registry, "import-mcp-servers", {"pageSize": 10})
    assert result == {"source": json_server.base, "pages": 3, "fetched": 23, "inserted": 23, "updated": 0, "skipped": 2}
    with engine.connect() as conn:
        row = conn.execute(select(mcp_servers).where(mcp_servers.c.name == "io.github.example3/mcp-server-3")).one()
    assert row.version == "1.0.0" and row.repository_url == "https://github.com/example3/mcp-server-3"
    assert row.packages[0]["identifier"] == "@example3/mcp-server" and row.status == "active"
    assert row.published_at == datetime(2025, 9, 16, 16, 43, 44, 243434, tzinfo=UTC)
    again = _run(registry, "import-mcp-servers", {"pageSize": 10}, at=NOW + timedelta(days=1))
    assert (again["inserted"], again["updated"]) == (0, 23)
    with engine.connect() as conn:
        assert conn.execute(select(mcp_servers.c.name)).scalars().all().__len__() == 23


def test_a_failing_page_leaves_the_previous_import_untouched(
    database_url: str, engine: Engine, json_server: JsonServer
) -> None:
    json_server.routes["/v0/servers"] = McpRegistry([mcp_entry(i) for i in range(15)])
    registry = _registry(database_url, json_server)
    _run(registry, "import-mcp-servers", {"pageSize": 5})
    changed = [mcp_entry(i, version="2.0.0") for i in range(30)]
    json_server.routes["/v0/servers"] = McpRegistry(changed, fail_page=4)
    with pytest.raises(HandlerFailed, match="500"):
        _run(registry, "import-mcp-servers", {"pageSize": 5}, at=NOW + timedelta(days=1))
    with engine.connect() as conn:
        versions = set(conn.execute(select(mcp_servers.c.version)).scalars())
        count = len(conn.execute(select(mcp_servers.c.name)).all())
        runs = len(conn.execute(select(import_runs.c.id)).all())
    assert (versions, count, runs) == ({"1.0.0"}, 15, 1)


def test_public_apis_are_imported_from_the_preferred_version(
    database_url: str, engine: Engine, json_server: JsonServer
) -> None:
    json_server.routes["/v2/list.json"] = lambda _q, _b: (200, apis_guru_list(12))
    registry = _registry(database_url, json_server)
    result = _run(registry, "import-public-apis")
    assert (result["fetched"], result["inserted"], result["skipped"]) == (12, 12, 0)
    assert _run(registry, "import-public-apis")["updated"] == 12
    with engine.connect() as conn:
        row = conn.execute(select(public_apis).where(public_apis.c.name == "api4.example.com")).one()
    assert row.title == "Example API 4" and row.version == "2.4" and row.categories == ["developer_tools"]
    assert row.openapi_url == "https://api.apis.guru/v2/specs/api4.example.com/2.4/openapi.json"


def test_import_all_sources_imports_both_and_names_a_failing_source(database_url: str, json_server: JsonServer) -> None:
    json_server.routes["/v0/servers"] = McpRegistry([mcp_entry(i) for i in range(4)])
    registry = _registry(database_url, json_server)
    with pytest.raises(HandlerFailed, match=r"publicApis: GET .* 404 \(imported: mcpServers: 4 rows\)"):
        _run(registry, "import-all-sources")
    json_server.routes["/v2/list.json"] = lambda _q, _b: (200, apis_guru_list(3))
    result = _run(registry, "import-all-sources")
    assert result["mcpServers"]["fetched"] == 4 and result["publicApis"]["fetched"] == 3


def test_verification_passes_on_good_data_and_reports_what_breaks(
    database_url: str, engine: Engine, json_server: JsonServer
) -> None:
    registry = _registry(database_url, json_server)
    with pytest.raises(HandlerFailed, match="no import recorded"):
        _run(registry, "verify-imported-data")
    json_server.routes["/v0/servers"] = McpRegistry([mcp_entry(i) for i in range(20)])
    json_server.routes["/v2/list.json"] = lambda _q, _b: (200, apis_guru_list(10))
    _run(registry, "import-all-sources")
    ok = _run(registry, "verify-imported-data")
    assert ok["ok"] is True and ok["tables"]["mcp_servers"]["rows"] == 20

    json_server.routes["/v2/list.json"] = lambda _q, _b: (200, apis_guru_list(10, broken=2))
    _run(registry, "import-public-apis")
    with engine.begin() as conn:
        conn.execute(update(mcp_servers).where(mcp_servers.c.name.like("%server-1")).values(description=""))
        conn.execute(delete(mcp_servers).where(mcp_servers.c.name.like("%server-1_")))  # 10 of 20 gone
    with pytest.raises(HandlerFailed) as caught:
        _run(registry, "verify-imported-data")
    message = str(caught.value)
    assert "mcp_servers: missing description (1: io.github.example1/mcp-server-1)" in message
    assert "mcp_servers: count dropped (1: 10 rows now, last import 20)" in message
    assert "public_apis: malformed openapi_url (2:" in message
    assert "public_apis: duplicate openapi_url (1: not a url)" in message
