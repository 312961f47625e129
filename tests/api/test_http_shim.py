"""The seed's HTTP API, served by the shim over a real server: every endpoint, its JSON shape, its errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.api import annotations_pb2
from schedule.v1 import schedule_service_pb2 as pb

from schedule_grpc.api.http import routes
from schedule_grpc.app import Replica
from tests.api.shim_support import serve
from tests.support import FakeClock, Webhook

SERVICE = pb.DESCRIPTOR.services_by_name["ScheduleService"]


@pytest.fixture
def shim(database_url: str, clock: FakeClock) -> Iterator[Replica]:
    with serve(database_url, clock) as service:
        yield service


@pytest.fixture
def http(shim: Replica) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{shim.http_port}", timeout=30) as client:
        yield client


def register(http: httpx.Client, name: str, url: str = "http://127.0.0.1:9/hook", **fields: Any) -> httpx.Response:
    body = {"name": name, "schedule": "@daily", "handler": "http", "metadata": {"url": url}, **fields}
    return http.post("/api/tasks", json=body)


def test_service_info_is_the_seed_document(http: httpx.Client) -> None:
    info = http.get("/").json()
    assert info["service"] == "schedule" and info["version"] == "1.0.0"
    assert set(info["interfaces"]) == {"rpc", "http", "cron"}
    assert info["endpoints"]["tasks"] == {
        "list": "GET /api/tasks",
        "get": "GET /api/tasks/:name",
        "register": "POST /api/tasks",
        "enable": "POST /api/tasks/:name/enable",
        "disable": "POST /api/tasks/:name/disable",
        "delete": "DELETE /api/tasks/:name",
        "run": "POST /api/tasks/:name/run",
        "history": "GET /api/tasks/:name/history",
    }
    assert info["endpoints"]["health"] == "GET /api/health"


def test_register_then_get_and_list_in_the_seed_shape(http: httpx.Client) -> None:
    response = register(
        http,
        "daily-report",
        enabled=True,
        metadata={"url": "https://example.test/hook", "description": "Generate daily report", "recipients": 3},
    )
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["success", "task", "message"]
    assert body["success"] is True and body["message"] == "Task daily-report registered successfully"
    task = body["task"]
    assert task["id"].startswith("task-") and task["name"] == "daily-report"
    assert task["schedule"] == "@daily" and task["handler"] == "http" and task["enabled"] is True
    assert task["metadata"] == {
        "url": "https://example.test/hook",
        "description": "Generate daily report",
        "recipients": 3,
    }
    assert task["createdAt"] == task["updatedAt"] == "2026-03-01T12:00:00Z"
    assert task["nextRun"] == "2026-03-02T00:00:00Z"
    assert "lastRun" not in task
    assert task["overlapPolicy"] == "skip" and task["retryPolicy"]["maxRetries"] == 5
    assert task["critical"] is False and task["timezone"] == "UTC"

    assert http.get("/api/tasks/daily-report").json() == {"success": True, "task": task}
    listing = http.get("/api/tasks").json()
    assert listing == {"success": True, "count": 1, "tasks": [task]}


def test_enable_disable_delete_answer_with_the_seed_messages(http: httpx.Client) -> None:
    register(http, "cleanup-expired-sessions")
    disabled = http.post("/api/tasks/cleanup-expired-sessions/disable").json()
    assert disabled["success"] is True and disabled["message"] == "Task cleanup-expired-sessions disabled"
    assert disabled["task"]["enabled"] is False and "nextRun" not in disabled["task"]
    enabled = http.post("/api/tasks/cleanup-expired-sessions/enable", json={}).json()
    assert enabled["message"] == "Task cleanup-expired-sessions enabled" and enabled["task"]["enabled"] is True
    deleted = http.delete("/api/tasks/cleanup-expired-sessions").json()
    assert deleted == {"success": True, "message": "Task cleanup-expired-sessions unregistered"}
    assert http.get("/api/tasks/cleanup-expired-sessions").status_code == 404


def test_run_reports_success_and_history_and_executions_show_it(http: httpx.Client, webhook: Webhook) -> None:
    register(http, "ping", url=webhook.url)
    run = http.post("/api/tasks/ping/run").json()
    assert run["success"] is True and run["message"] == "Task ping executed successfully"
    history = http.get("/api/tasks/ping/history", params={"limit": 10}).json()
    assert history["success"] is True and history["count"] == 1
    [execution] = history["history"]
    assert execution["id"] == run["execution"]["id"] and execution["taskName"] == "ping"
    assert execution["status"] == "success" and execution["trigger"] == "manual"
    assert execution["startedAt"] == execution["completedAt"] == "2026-03-01T12:00:00Z"
    assert isinstance(execution["durationMs"], int) and execution["attempt"] == 1
    assert execution["result"] == {"status": 200, "body": {"ok": True}}
    assert "error" not in execution and "errorCategory" not in execution
    recent = http.get("/api/executions").json()
    assert recent == {"success": True, "count": 1, "executions": [execution]}


def test_run_of_a_failing_task_answers_success_false(http: httpx.Client, webhook: Webhook) -> None:
    webhook.status = 500
    register(http, "flaky", url=webhook.url)
    response = http.post("/api/tasks/flaky/run")
    assert response.status_code == 200
    assert response.json()["success"] is False and "500" in response.json()["message"]
    [execution] = http.get("/api/tasks/flaky/history").json()["history"]
    assert execution["status"] == "failed" and execution["errorCategory"] == "network"


def test_handlers_are_listed_with_a_count(http: httpx.Client) -> None:
    body = http.get("/api/handlers").json()
    assert body["success"] is True and "http" in body["handlers"] and body["count"] == len(body["handlers"])
    assert body["handlerDetails"][0]["name"] == body["handlers"][0]


def test_init_installs_the_seed_defaults_in_the_seed_shape(http: httpx.Client) -> None:
    response = http.post("/api/init")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["message"] == "Default tasks initialized"
    names = {t["name"] for t in body["tasks"]}
    assert len(names) == 13 and {"cleanup-expired-sessions", "backup-database", "health-check-services"} <= names
    listed = http.get("/api/tasks").json()
    assert {t["name"] for t in listed["tasks"]} == names
    assert http.post("/api/init").json()["success"] is True  # idempotent
    assert http.get("/api/tasks").json()["count"] == 13


def test_health_is_open_and_reports_the_status(http: httpx.Client, shim: Replica) -> None:
    assert http.get("/api/health").json() == {"success": True, "service": "schedule", "status": "serving"}
    shim.monitor.stop()
    response = http.get("/api/health")
    assert response.status_code == 503
    assert response.json()["success"] is False and response.json()["status"] == "not_serving"


def test_short_enum_names_are_accepted_in_requests(http: httpx.Client) -> None:
    body = register(http, "queued", overlapPolicy="queue_one", retry_policy={"maxRetries": 2}).json()
    assert body["task"]["overlapPolicy"] == "queue_one" and body["task"]["retryPolicy"]["maxRetries"] == 2
    full = register(http, "allowed", overlapPolicy="OVERLAP_POLICY_ALLOW").json()
    assert full["task"]["overlapPolicy"] == "allow"


def test_schedule_preview_custom_verb_route(http: httpx.Client) -> None:
    body = http.post(
        "/api/schedules:preview", json={"schedule": "0 * * * *", "startTime": "2026-03-01T12:00:00Z", "count": 2}
    ).json()
    assert body == {"success": True, "count": 2, "nextRunTimes": ["2026-03-01T13:00:00Z", "2026-03-01T14:00:00Z"]}


BAD_REQUESTS = [
    ("POST", "/api/tasks", b"{not json", "MALFORMED_JSON"),
    ("POST", "/api/tasks", b"[1, 2]", "BAD_REQUEST_BODY"),
    ("POST", "/api/tasks", b'{"name": 5, "schedule": "@daily", "handler": "http"}', "BAD_REQUEST_BODY"),
    ("POST", "/api/tasks", b'{"name": "x", "enabled": "yes"}', "BAD_REQUEST_BODY"),
    ("POST", "/api/tasks", b'{"name": "x", "colour": "red"}', "BAD_REQUEST_BODY"),
    ("POST", "/api/tasks", b'{"name": "x", "overlapPolicy": "sometimes"}', "BAD_REQUEST_BODY"),
    ("POST", "/api/tasks", b'{"name": "x", "metadata": {"url": "' + b"y" * 300_000 + b'"}}', "BODY_TOO_LARGE"),
    ("POST", "/api/tasks?limit=3", b"{}", "BAD_QUERY_PARAMETER"),
    ("GET", "/api/executions?limit=many", b"", "BAD_QUERY_PARAMETER"),
    ("GET", "/api/executions?colour=red", b"", "BAD_QUERY_PARAMETER"),
    ("GET", "/api/executions?limit=1&limit=2", b"", "BAD_QUERY_PARAMETER"),
    ("POST", "/api/tasks/x/enable", b'{"enabled": true}', "UNEXPECTED_BODY"),
    ("GET", "/api/executions?limit=5000", b"", "INVALID_PAGE_SIZE"),
    ("POST", "/api/tasks", b'{"name": "bad name", "schedule": "@daily", "handler": "http"}', "INVALID_TASK_NAME"),
]


@pytest.mark.parametrize(("verb", "path", "body", "reason"), BAD_REQUESTS)
def test_bad_requests_are_400_with_a_reason(http: httpx.Client, verb: str, path: str, body: bytes, reason: str) -> None:
    response = http.request(verb, path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["success"] is False and payload["reason"] == reason and payload["error"]
    assert http.get("/api/tasks").json()["count"] == 0


def test_field_errors_name_the_field(http: httpx.Client) -> None:
    payload = register(http, "t", schedule="0 0 30 2 *").json()
    assert payload["error"].startswith("schedule:") and payload["code"] == "INVALID_ARGUMENT"


def test_not_found_conflict_and_unknown_routes(http: httpx.Client) -> None:
    missing = http.get("/api/tasks/nope")
    assert missing.status_code == 404 and missing.json()["reason"] == "TASK_NOT_FOUND"
    assert register(http, "dup").status_code == 200
    conflict = register(http, "dup")
    assert conflict.status_code == 409 and conflict.json() == {
        "success": False,
        "error": "task 'dup' already exists",
        "code": "ALREADY_EXISTS",
        "reason": "TASK_EXISTS",
    }
    nowhere = http.get("/api/nowhere")
    assert nowhere.status_code == 404 and nowhere.json()["reason"] == "ROUTE_NOT_FOUND"
    wrong_verb = http.put("/api/tasks/dup")
    assert wrong_verb.status_code == 405 and "GET" in wrong_verb.headers["allow"]
    assert wrong_verb.json()["code"] == "METHOD_NOT_ALLOWED"


# Each answer in our words: what is wrong, where, and what would be right; no interpreter's text.
WORDED = [
    ("GET", "/api/executions?limit=abc", b"", "BAD_QUERY_PARAMETER", "limit: expected a whole number in range"),
    ("GET", "/api/executions?statuses=done", b"", "BAD_QUERY_PARAMETER", "statuses: unknown value 'done'"),
    ("GET", "/api/executions?startTime=yesterday", b"", "BAD_QUERY_PARAMETER", "startTime: expected an RFC 3339"),
    ("POST", "/api/tasks", b'{"name": "x", "bogus": 1}', "BAD_REQUEST_BODY", "unknown field 'bogus'"),
    ("POST", "/api/tasks", b'{"name": "x", "timeout": "forever"}', "BAD_REQUEST_BODY", "timeout: expected a duration"),
    ("POST", "/api/tasks", b'{"retryPolicy": {"maxRetries": "a"}}', "BAD_REQUEST_BODY", "retryPolicy.maxRetries:"),
    ("POST", "/api/tasks", b'{"name": ', "MALFORMED_JSON", "not valid JSON (line 1, column 10)"),
]


@pytest.mark.parametrize(("verb", "path", "body", "reason", "words"), WORDED)
def test_bad_requests_are_answered_in_our_words(
    http: httpx.Client, verb: str, path: str, body: bytes, reason: str, words: str
) -> None:
    payload = http.request(verb, path, content=body, headers={"content-type": "application/json"}).json()
    assert payload["reason"] == reason and words in payload["error"], payload
    for leak in ("invalid literal", "Message type", "Traceback", "schedule.v1.", ".py", "char "):
        assert leak not in payload["error"], payload


def test_percent_encoded_names_reach_the_api_decoded(http: httpx.Client) -> None:
    register(http, "team:nightly")
    assert http.get("/api/tasks/team%3Anightly").json()["task"]["name"] == "team:nightly"


def test_unavailable_database_is_503(clock: FakeClock) -> None:
    with (
        serve("postgresql+psycopg://postgres@127.0.0.1:9/none", clock, health_interval_s=0.05) as service,
        httpx.Client(base_url=f"http://127.0.0.1:{service.http_port}", timeout=60) as http,
    ):
        response = http.get("/api/tasks")
        assert response.status_code == 503 and response.json()["code"] == "UNAVAILABLE"
        assert http.get("/api/health").status_code == 503


def _sample_path(route: routes.Route) -> str:
    return routes._VARIABLE.sub("probe-name", route.template)


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
def test_every_annotated_unary_rpc_is_reachable_through_the_shim(http: httpx.Client, method: str) -> None:
    """Read from the descriptor, not a hand list: an RPC added with an annotation is served with no code change."""
    descriptor = SERVICE.methods_by_name[method]
    shim_routes = [r for r in routes.routes_for(SERVICE) if r.method.name == method]
    if descriptor.client_streaming or descriptor.server_streaming:
        assert shim_routes == [], "streaming RPCs stay off the shim"
        return
    if not descriptor.GetOptions().HasExtension(annotations_pb2.http):
        assert shim_routes == []
        return
    assert shim_routes, f"{method} has an annotation but no route"
    for route in shim_routes:
        response = http.request(route.verb, _sample_path(route), json={} if route.body else None)
        payload = response.json()
        # The call reached the gRPC method: either it answered, or the error came through the error table.
        assert response.status_code < 500 or response.status_code in (501, 503), payload
        assert payload.get("reason") not in ("ROUTE_NOT_FOUND", "METHOD_NOT_ALLOWED"), payload
        assert ("success" in payload) and (payload["success"] is not False or payload["code"] != "INTERNAL")
