"""The shim's parts without a server: routes from any annotated descriptor, the JSON rules, tokens, limits."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from schedule.v1 import schedule_service_pb2 as pb

from schedule_grpc.api import auth
from schedule_grpc.api.http import marshal, routes
from schedule_grpc.api.limits import Rate, RateLimiter
from schedule_grpc.domain import caller
from schedule_grpc.domain.caller import Caller, Role
from schedule_grpc.domain.errors import PermissionDenied, Unauthenticated
from schedule_grpc.settings import Settings, SettingsError


def _future_service() -> descriptor_pool.DescriptorPool:
    """A service the shim has never seen: an annotated unary RPC with a custom verb, and a streaming one."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in (descriptor_pb2, http_pb2, annotations_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        dependency.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    file = descriptor_pb2.FileDescriptorProto(
        name="future.proto", package="future.v1", syntax="proto3", dependency=["google/api/annotations.proto"]
    )
    request = file.message_type.add(name="CancelExecutionRequest")
    request.field.add(name="execution_id", number=1, type=9, label=1, json_name="executionId")
    request.field.add(name="reason", number=2, type=9, label=1, json_name="reason")
    file.message_type.add(name="CancelExecutionResponse")
    service = file.service.add(name="FutureService")
    cancel = service.method.add(
        name="CancelExecution",
        input_type=".future.v1.CancelExecutionRequest",
        output_type=".future.v1.CancelExecutionResponse",
    )
    rule = http_pb2.HttpRule(post="/api/executions/{execution_id}:cancel", body="*")
    rule.additional_bindings.add(delete="/api/{execution_id=executions/*}")
    cancel.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    watch = service.method.add(
        name="Watch",
        input_type=".future.v1.CancelExecutionRequest",
        output_type=".future.v1.CancelExecutionResponse",
        server_streaming=True,
    )
    watch.options.Extensions[annotations_pb2.http].CopyFrom(http_pb2.HttpRule(get="/api/watch"))
    pool.Add(file)
    return pool


def test_routes_come_from_the_annotations_of_any_service() -> None:
    service = _future_service().FindServiceByName("future.v1.FutureService")
    table = routes.routes_for(service)
    assert [(r.verb, r.template) for r in table] == [
        ("POST", "/api/executions/{execution_id}:cancel"),
        ("DELETE", "/api/{execution_id=executions/*}"),
    ]
    route, values = routes.match(table, "POST", "/api/executions/exec-1:cancel")
    assert route.full_method == "/future.v1.FutureService/CancelExecution" and values == {"execution_id": "exec-1"}
    request = message_factory.GetMessageClass(route.method.input_type)()
    marshal.from_json({"reason": "stop", **values}, request)
    assert request.execution_id == "exec-1" and request.reason == "stop"  # type: ignore[attr-defined]
    assert routes.match(table, "DELETE", "/api/executions/exec-2")[1] == {"execution_id": "executions/exec-2"}
    with pytest.raises(routes.NoRoute):
        routes.match(table, "DELETE", "/api/executions/exec-2/more")
    with pytest.raises(routes.WrongVerb) as caught:
        routes.match(table, "GET", "/api/executions/exec-1:cancel")
    assert caught.value.allowed == ["DELETE", "POST"]
    with pytest.raises(routes.NoRoute):  # streaming RPCs are left off the shim
        routes.match(table, "GET", "/api/watch")


def test_literal_custom_verbs_win_over_variables() -> None:
    table = routes.routes_for(pb.DESCRIPTOR.services_by_name["ScheduleService"])
    assert routes.match(table, "POST", "/api/schedules:preview")[0].method.name == "PreviewSchedule"
    assert routes.match(table, "GET", "/api/tasks/a%2Fb")[1] == {"name": "a/b"}


@pytest.mark.parametrize(
    ("enum", "number", "short"),
    [
        (pb.ExecutionStatus.DESCRIPTOR, pb.EXECUTION_STATUS_SUCCESS, "success"),
        (pb.ExecutionTrigger.DESCRIPTOR, pb.EXECUTION_TRIGGER_RETRY, "retry"),
        (pb.ErrorCategory.DESCRIPTOR, pb.ERROR_CATEGORY_TIMEOUT, "timeout"),
        (pb.OverlapPolicy.DESCRIPTOR, pb.OVERLAP_POLICY_QUEUE_ONE, "queue_one"),
        (pb.OverlapPolicy.DESCRIPTOR, 99, 99),
    ],
)
def test_enums_render_as_lowercase_short_names(enum: object, number: int, short: object) -> None:
    assert marshal.enum_short_name(enum, number) == short  # type: ignore[arg-type]


def test_json_rules_for_scalars_and_well_known_types() -> None:
    execution = pb.Execution(id="exec-1", status=pb.EXECUTION_STATUS_FAILED, attempt=0)
    execution.result.struct_value.update({"n": 42, "f": 1.5})
    execution.scheduled_for.FromSeconds(0)
    assert marshal.to_json(execution) == {
        "id": "exec-1",
        "status": "failed",
        "result": {"n": 42, "f": 1.5},
        "scheduledFor": "1970-01-01T00:00:00Z",
        "attempt": 0,
    }
    with pytest.raises(marshal.BadJson, match="overlapPolicy: unknown value 'Skip'"):
        marshal.from_json({"overlapPolicy": "Skip"}, pb.RegisterTaskRequest())
    with pytest.raises(marshal.BadJson, match="must be a JSON object"):
        marshal.from_json([1], pb.RegisterTaskRequest())


def test_tokens_are_kept_hashed_and_matched_to_their_caller() -> None:
    spec = f"alpha:service:{auth.hash_token('s3cret')},ops:admin:{auth.hash_token('r00t')}"
    table = auth.TokenTable.parse(spec)
    assert table.caller_for("s3cret") == Caller("alpha", Role.SERVICE)
    assert table.caller_for("r00t") == Caller("ops", Role.ADMIN)
    assert table.caller_for("s3cret ") is None and "s3cret" not in repr(vars(table))


def test_token_setting_is_validated_without_echoing_the_hash() -> None:
    with pytest.raises(SettingsError, match="SCHEDULE_AUTH_TOKENS") as caught:
        Settings.from_env({"SCHEDULE_AUTH_TOKENS": "alpha:root:" + "0" * 64})
    assert "0" * 64 not in str(caught.value)
    with pytest.raises(SettingsError, match="SCHEDULE_HTTP_ADDRESS"):
        Settings.from_env({"SCHEDULE_HTTP_ADDRESS": "8080"})
    assert Settings.from_env({"SCHEDULE_HTTP_ADDRESS": "off"}).http_address == ""


def test_authentication_decisions() -> None:
    security = auth.Security(
        auth.TokenTable([("a", Role.SERVICE, auth.hash_token("t"))]), True, frozenset({"ops"}), None
    )
    assert security.authenticate({"authorization": "bearer t"}, {}) == Caller("a", Role.SERVICE)
    assert security.authenticate({}, {"x509_common_name": [b"ops"]}) == Caller("ops", Role.ADMIN)
    assert security.authenticate({}, {"x509_subject_alternative_name": [b"svc"]}) == Caller("svc", Role.SERVICE)
    for metadata in ({}, {"authorization": "Bearer "}, {"authorization": "Bearer nope"}):
        with pytest.raises(Unauthenticated):
            security.authenticate(metadata, {})


@pytest.mark.parametrize(
    ("method", "role", "expensive"),
    [
        ("/schedule.v1.ScheduleService/GetTask", Role.SERVICE, False),
        ("/schedule.v1.ScheduleService/RunTaskNow", Role.SERVICE, True),
        ("/schedule.v1.ScheduleService/InitializeDefaultTasks", Role.ADMIN, True),
        ("/schedule.v1.ScheduleService/RedriveDeadLetter", Role.ADMIN, True),
        ("/schedule.v1.ScheduleService/DiscardDeadLetter", Role.ADMIN, False),
        ("/grpc.health.v1.Health/Check", None, False),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Role.SERVICE, False),
    ],
)
def test_method_policy(method: str, role: Role | None, expensive: bool) -> None:
    assert auth.required_role(method) == role
    assert auth.is_expensive(method) == expensive


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:1", True),
        ("[::1]:1", True),
        ("localhost:1", True),
        ("[::]:1", False),
        ("0.0.0.0:1", False),
        ("10.0.0.5:1", False),
        ("example.test:1", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert auth.is_loopback(address) is loopback


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter({"default": Rate(per_s=2.0, burst=2)}, now=lambda: now[0])
    assert limiter.take("a", "default") == 0 and limiter.take("a", "default") == 0
    assert limiter.take("a", "default") == pytest.approx(0.5)
    assert limiter.take("b", "default") == 0
    now[0] = 0.5
    assert limiter.take("a", "default") == 0
    now[0] = 100.0
    assert [limiter.take("a", "default") for _ in range(3)][-1] > 0  # never more than the burst


def test_ownership_rule() -> None:
    caller.require_owner(None, "anyone", "task")  # open: no caller
    alpha = Caller("alpha", Role.SERVICE)
    caller.require_owner(alpha, "alpha", "task")
    for owner in ("beta", None):
        with pytest.raises(PermissionDenied):
            caller.require_owner(alpha, owner, "task")
    caller.require_owner(Caller("ops", Role.ADMIN), None, "task")


def test_the_caller_is_set_for_the_block_only() -> None:
    alpha = Caller("alpha", Role.SERVICE)
    with caller.acting_as(alpha):
        assert caller.current() is alpha
    assert caller.current() is None


def test_shim_socket_is_tcp_so_asyncio_turns_nagle_off() -> None:
    import socket

    from schedule_grpc.api.http.serve import bind

    with bind("127.0.0.1:0") as sock:
        assert sock.proto == socket.IPPROTO_TCP and sock.getsockname()[1] > 0
    with bind("[::1]:0") as sock:
        assert sock.family == socket.AF_INET6
