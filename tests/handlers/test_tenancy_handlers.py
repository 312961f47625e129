"""The handlers' side of tenancy: local-lane outbound calls pass the egress policy, a table allowed at
registration is refused at execution once the operator narrows the list, and the settings behind both
are validated at start-up."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, insert, select

from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.domain.models import ErrorCategory, Task
from schedule_grpc.handlers.base import HandlerFailed
from schedule_grpc.handlers.registry import egress_policy
from schedule_grpc.security.egress import EgressDenied
from schedule_grpc.settings import Settings, SettingsError
from schedule_grpc.store.platform_tables import entities, generations, mcp_servers
from schedule_grpc.usecases import retention
from tests.handler_support import EmbeddingsEndpoint, JsonServer, McpRegistry, context, mcp_entry

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def _policy_failure(run: object) -> HandlerFailed:
    with pytest.raises(HandlerFailed) as caught:
        run()  # type: ignore[operator]
    assert caught.value.category is ErrorCategory.POLICY
    return caught.value


def test_imports_to_a_loopback_source_are_denied_by_default_and_write_nothing(
    database_url: str, engine: Engine, json_server: JsonServer
) -> None:
    json_server.routes["/v0/servers"] = McpRegistry([mcp_entry(i) for i in range(3)])
    handler = handler_registry(Settings(database_url=database_url, mcp_registry_url=json_server.base)).get(
        "import-mcp-servers"
    )
    assert handler is not None
    failure = _policy_failure(lambda: handler.run(context("import-mcp-servers", at=NOW)))
    assert "egress denied" in str(failure) and "loopback" in str(failure)
    assert json_server.hits.get("/v0/servers", 0) == 0  # no request left the service
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mcp_servers)).scalar_one() == 0
    allowed = handler_registry(
        Settings(database_url=database_url, mcp_registry_url=json_server.base, egress_allow="127.0.0.0/8")
    ).get("import-mcp-servers")
    assert allowed is not None and allowed.run(context("import-mcp-servers", at=NOW))["fetched"] == 3


def test_embeddings_to_a_denied_provider_fail_with_the_policy_reason(
    database_url: str, engine: Engine, json_server: JsonServer
) -> None:
    json_server.routes["/v1/embeddings"] = EmbeddingsEndpoint()
    with engine.begin() as conn:
        conn.execute(insert(entities).values(id="e1", type="doc", name="one", content="hello"))
    settings = Settings(
        database_url=database_url, embeddings_url=f"{json_server.base}/v1/embeddings", egress_deny="127.0.0.1/32"
    )
    handler = handler_registry(settings).get("generate-missing-embeddings")
    assert handler is not None
    failure = _policy_failure(lambda: handler.run(context("generate-missing-embeddings", at=NOW)))
    assert "denied network 127.0.0.1/32" in str(failure)
    with engine.connect() as conn:
        assert conn.execute(select(entities.c.embedding)).scalar_one() is None


def test_a_table_the_operator_no_longer_allows_is_refused_when_the_task_runs(database_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(generations).values(id="g1", model="m", prompt="p", created_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    registered = handler_registry(Settings(database_url=database_url)).get("cleanup-old-generations")
    assert registered is not None
    registered.validate({"table": "generations"})  # accepted at registration
    narrowed = Settings(database_url=database_url, handler_tables="cleanup-old-generations=archive.generations")
    handler = handler_registry(narrowed).get("cleanup-old-generations")
    assert handler is not None
    failure = _policy_failure(lambda: handler.run(context("cleanup-old-generations", {"table": "generations"}, at=NOW)))
    assert str(failure).startswith("refused at execution: metadata.table:")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(generations)).scalar_one() == 1


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SCHEDULE_HANDLER_TABLES", "cleanup-old-generations=scheduled_tasks", "own tables"),
        ("SCHEDULE_HANDLER_TABLES", "cleanup-old-generations=bad-name", "not a table name"),
        ("SCHEDULE_EGRESS_ALLOW", "10.0.0.0/8,not-a-network", "not a network"),
        ("SCHEDULE_EGRESS_DENY", "300.1.1.1", "not a network"),
        ("SCHEDULE_SECRETS_DIR", "/nonexistent/secrets", "not a directory"),
        ("SCHEDULE_MAX_MEMORY_LIMIT_MB", "0", "greater than 0"),
    ],
)
def test_tenancy_settings_are_validated_at_start_up(variable: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=variable) as caught:
        Settings.from_env({variable: value})
    assert says in str(caught.value)


def test_the_services_own_listeners_are_denied_endpoints() -> None:
    policy = egress_policy(
        Settings(grpc_address="[::]:50051", metrics_address="0.0.0.0:9464", http_address="localhost:8080")
    )
    for address, port in (("127.0.0.1", 50051), ("10.1.2.3", 9464), ("::1", 8080), ("127.0.0.1", 8080)):
        with pytest.raises(EgressDenied, match="own listeners"):
            policy.check(address, port)
    policy.check("93.184.216.34", 443)  # public addresses on other ports stay reachable


def task_like(*, name: str, handler: str, owner: str | None) -> Task:
    return Task("task-x", name, "30 3 * * *", handler, True, {}, "UTC", NOW, NOW, owner=owner)


def test_start_up_says_loudly_when_the_retention_task_is_not_the_services(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    taken = task_like(name=retention.TASK_NAME, handler="http", owner="alpha")
    assert retention.check_maintenance_task(lambda _name: taken) is False
    assert "NOT being deleted" in caplog.text
    own = task_like(name=retention.TASK_NAME, handler=retention.TASK_NAME, owner=None)
    assert retention.check_maintenance_task(lambda _name: own) is True
