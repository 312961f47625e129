"""health-check-services probes real gRPC and HTTP services and alerts once per change;
check-rate-limits alerts about usage above the threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from grpc_health.v1 import health_pb2
from sqlalchemy import Engine, insert, select

from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import ErrorCategory
from schedule_grpc.handlers.base import HandlerFailed
from schedule_grpc.handlers.monitoring import parse_targets
from schedule_grpc.settings import Settings, SettingsError
from schedule_grpc.store.platform_tables import rate_limit_usage, service_health
from tests.handler_support import GrpcTestServer, JsonServer, context

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_services_going_down_and_coming_back_alert_once_per_change(
    database_url: str, engine: Engine, grpc_server: GrpcTestServer, json_server: JsonServer
) -> None:
    web = {"status": 200}
    json_server.routes["/healthz"] = lambda _q, _b: (web["status"], {"ok": web["status"] == 200})
    targets = f"billing=grpc://{grpc_server.target}/billing.v1.Billing,web={json_server.base}/healthz"
    handler = handler_registry(
        Settings(database_url=database_url, health_check_targets=targets, egress_allow="127.0.0.0/8")
    ).get("health-check-services")
    assert handler is not None

    def run(minutes: int) -> dict[str, object]:
        return handler.run(context("health-check-services", {"timeoutSeconds": 2}, at=NOW + timedelta(minutes=minutes)))  # type: ignore[no-any-return]

    first = run(0)
    assert first["up"] == 2 and first["down"] == 0 and first["alerts"] == []
    billing = first["services"][0]  # type: ignore[index]
    assert billing["name"] == "billing" and billing["detail"] == "SERVING" and billing["latencyMs"] >= 0
    assert grpc_server.health.calls[-1][0] == "billing.v1.Billing"

    grpc_server.health.status = health_pb2.HealthCheckResponse.NOT_SERVING
    web["status"] = 503
    down = run(5)
    assert down["down"] == 2
    assert sorted(a["subject"] for a in down["alerts"]) == [  # type: ignore[attr-defined]
        "[schedule] billing is DOWN",
        "[schedule] web is DOWN",
    ]
    assert "NOT_SERVING" in down["alerts"][0]["body"]  # type: ignore[index]
    assert run(10)["alerts"] == []  # still down: no second alert

    grpc_server.health.status = health_pb2.HealthCheckResponse.SERVING
    back = run(15)
    assert [a["subject"] for a in back["alerts"]] == ["[schedule] billing is back UP"]  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = {r.name: r for r in conn.execute(select(service_health))}
    assert rows["billing"].status == "up" and rows["billing"].changed_at == NOW + timedelta(minutes=15)
    assert rows["web"].status == "down" and rows["web"].changed_at == NOW + timedelta(minutes=5)
    assert rows["web"].checked_at == NOW + timedelta(minutes=15)


def test_an_unreachable_or_slow_service_is_down_within_the_deadline(
    database_url: str, grpc_server: GrpcTestServer
) -> None:
    grpc_server.health.delay_s = 2.0
    handler = handler_registry(Settings(database_url=database_url, egress_allow="127.0.0.0/8")).get(
        "health-check-services"
    )
    assert handler is not None
    metadata = {
        "targets": {"slow": f"grpc://{grpc_server.target}", "gone": "http://127.0.0.1:9/health"},
        "timeoutSeconds": 0.5,
    }
    result = handler.run(context("x", metadata, at=NOW))
    by_name = {s["name"]: s for s in result["services"]}
    assert by_name["slow"]["status"] == "down" and "DEADLINE_EXCEEDED" in by_name["slow"]["detail"]
    assert by_name["slow"]["latencyMs"] < 1500
    assert by_name["gone"]["status"] == "down"
    assert len(result["alerts"]) == 2  # first seen down: alert


def test_target_lists_are_checked_at_start_up_and_registration() -> None:
    assert parse_targets(" a=grpc://h:1 , b=https://x/y ") == {"a": "grpc://h:1", "b": "https://x/y"}
    for bad in ("a", "a=ftp://x", "a=grpc://host", "a=http://x,a=http://y"):
        with pytest.raises(ValueError):
            parse_targets(bad)
    with pytest.raises(SettingsError, match="SCHEDULE_HEALTH_CHECK_TARGETS"):
        handler_registry(Settings(health_check_targets="nonsense"))
    handler = handler_registry(Settings()).get("health-check-services")
    assert handler is not None
    with pytest.raises(InvalidArgument) as caught:
        handler.validate({"targets": {"db": "tcp://x:1"}})
    assert caught.value.field == "metadata.targets.db"


def test_rate_limits_above_the_threshold_are_alerted(database_url: str, engine: Engine) -> None:
    window = {"window_start": NOW - timedelta(minutes=30), "window_end": NOW + timedelta(minutes=30)}
    with engine.begin() as conn:
        conn.execute(
            insert(rate_limit_usage),
            [
                {"key": "key-hot", "used": 950, "limit": 1000, **window},
                {"key": "key-edge", "used": 80, "limit": 100, **window},
                {"key": "key-calm", "used": 10, "limit": 100, **window},
                {"key": "key-past", "used": 100, "limit": 100, "window_start": NOW - timedelta(hours=2),
                 "window_end": NOW - timedelta(hours=1)},
            ],
        )  # fmt: skip
    handler = handler_registry(Settings(database_url=database_url)).get("check-rate-limits")
    assert handler is not None
    result = handler.run(context("check-rate-limits", at=NOW))
    assert result["checked"] == 3
    assert [r["key"] for r in result["overThreshold"]] == ["key-edge", "key-hot"]
    [alert] = result["alerts"]
    assert alert["subject"] == "[schedule] 2 rate limit(s) above 80%"
    assert "key-hot: 950/1000 (95%)" in alert["body"]
    calm = handler.run(context("check-rate-limits", {"threshold": 0.99}, at=NOW))
    assert calm["overThreshold"] == [] and calm["alerts"] == []


def test_probes_pass_the_egress_policy(database_url: str, grpc_server: GrpcTestServer, json_server: JsonServer) -> None:
    json_server.routes["/healthz"] = lambda _q, _b: (200, {"ok": True})
    handler = handler_registry(Settings(database_url=database_url)).get("health-check-services")  # default policy
    assert handler is not None
    for target in (f"grpc://{grpc_server.target}", f"{json_server.base}/healthz"):
        with pytest.raises(HandlerFailed, match=r"egress denied: 127\.0\.0\.1 is loopback") as caught:
            handler.run(context("x", {"targets": {"internal": target}, "timeoutSeconds": 2}, at=NOW))
        assert caught.value.category is ErrorCategory.POLICY
    assert grpc_server.health.calls == [] and json_server.hits == {}
