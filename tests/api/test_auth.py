"""Authentication, roles, ownership and rate limits, on gRPC and through the HTTP shim, over real servers."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica
from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import Execution, ExecutionStatus, Trigger
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.queue import QueueStore
from tests.api.helpers import error_details
from tests.api.shim_support import AUTH_TOKENS, bearer, serve
from tests.support import FakeClock

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def secured(database_url: str, clock: FakeClock) -> Iterator[Replica]:
    with serve(database_url, clock, auth_tokens=AUTH_TOKENS, health_address="127.0.0.1:0") as service:
        yield service


@pytest.fixture
def stub(secured: Replica) -> Iterator[pb_grpc.ScheduleServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        yield pb_grpc.ScheduleServiceStub(channel)


@pytest.fixture
def http(secured: Replica) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{secured.http_port}", timeout=30) as client:
        yield client


def _register(stub: pb_grpc.ScheduleServiceStub, name: str, token: str) -> pb.Task:
    metadata = struct_pb2.Struct()
    metadata.update({"url": "http://127.0.0.1:9/"})
    request = pb.RegisterTaskRequest(name=name, schedule="@hourly", handler="http", metadata=metadata)
    return stub.RegisterTask(request, metadata=tuple(bearer(token).items())).task


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code()


def test_grpc_calls_without_a_valid_token_are_unauthenticated(stub: pb_grpc.ScheduleServiceStub) -> None:
    for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", "Basic YTpi"),)]:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListTasks(pb.ListTasksRequest(), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_details(caught.value)[0] in ("NO_CREDENTIAL", "INVALID_TOKEN", "MALFORMED_CREDENTIAL")
    assert stub.ListTasks(pb.ListTasksRequest(), metadata=tuple(bearer("alpha-secret").items())).tasks == []


def test_http_calls_without_a_valid_token_are_401(http: httpx.Client) -> None:
    for headers in [{}, bearer("wrong"), {"authorization": "Token x"}]:
        response = http.get("/api/tasks", headers=headers)
        assert response.status_code == 401 and response.json()["code"] == "UNAUTHENTICATED"
        assert response.json()["success"] is False
    assert http.get("/api/tasks", headers=bearer("alpha-secret")).json() == {"success": True, "count": 0, "tasks": []}


def test_health_stays_open_on_both_protocols_and_on_the_probe_port(secured: Replica, http: httpx.Client) -> None:
    assert http.get("/api/health").status_code == 200
    for port in (secured.port, secured.health_port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{secured.health_port}") as channel:
        # The probe port serves health and nothing else.
        assert _code(lambda: pb_grpc.ScheduleServiceStub(channel).ListTasks(pb.ListTasksRequest())) == (
            grpc.StatusCode.UNIMPLEMENTED
        )


def test_admin_only_calls_refuse_services_on_both_protocols(
    stub: pb_grpc.ScheduleServiceStub, http: httpx.Client
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.InitializeDefaultTasks(pb.InitializeDefaultTasksRequest(), metadata=tuple(bearer("alpha-secret").items()))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(caught.value)[0] == "ADMIN_ONLY"
    denied = http.post("/api/init", headers=bearer("alpha-secret"))
    assert denied.status_code == 403 and denied.json()["reason"] == "ADMIN_ONLY"
    # An admin gets past the role check and installs the defaults.
    assert http.post("/api/init", headers=bearer("root-secret")).status_code == 200


def test_services_manage_their_own_tasks_and_admins_everyones(
    stub: pb_grpc.ScheduleServiceStub, http: httpx.Client
) -> None:
    task = _register(stub, "alpha-task", "alpha-secret")
    assert task.owner == "alpha"
    # Anyone authenticated reads.
    assert http.get("/api/tasks/alpha-task", headers=bearer("beta-secret")).json()["task"]["owner"] == "alpha"
    for verb, path in [
        ("POST", "/api/tasks/alpha-task/disable"),
        ("POST", "/api/tasks/alpha-task/enable"),
        ("POST", "/api/tasks/alpha-task/run"),
        ("DELETE", "/api/tasks/alpha-task"),
    ]:
        response = http.request(verb, path, headers=bearer("beta-secret"))
        assert response.status_code == 403 and response.json()["reason"] == "NOT_OWNER", (verb, path)
    with pytest.raises(grpc.RpcError) as caught:
        stub.DisableTask(pb.DisableTaskRequest(name="alpha-task"), metadata=tuple(bearer("beta-secret").items()))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert http.get("/api/tasks/alpha-task", headers=bearer("alpha-secret")).json()["task"]["enabled"] is True

    assert http.post("/api/tasks/alpha-task/disable", headers=bearer("alpha-secret")).status_code == 200
    assert http.post("/api/tasks/alpha-task/enable", headers=bearer("root-secret")).status_code == 200
    assert http.delete("/api/tasks/alpha-task", headers=bearer("root-secret")).status_code == 200


def test_only_the_owner_or_an_admin_cancels_an_execution(secured: Replica, stub: pb_grpc.ScheduleServiceStub) -> None:
    task = _register(stub, "alpha-job", "alpha-secret")
    later = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # queued far ahead, so nothing runs it meanwhile
    queued = QueueStore(secured.database).enqueue(
        Execution(
            id=new_id("exec"),
            task_id=task.id,
            task_name=task.name,
            trigger=Trigger.SCHEDULE,
            scheduled_for=later,
            attempt=1,
            status=ExecutionStatus.PENDING,
            due_at=later,
            created_at=later,
        )
    )
    request = pb.CancelExecutionRequest(execution_id=queued.id)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CancelExecution(request, metadata=tuple(bearer("beta-secret").items()))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(caught.value)[0] == "NOT_OWNER"
    still = ExecutionStore(secured.database).get(queued.id)
    assert still is not None and still.status is ExecutionStatus.PENDING
    cancelled = stub.CancelExecution(request, metadata=tuple(bearer("alpha-secret").items())).execution
    assert cancelled.status == pb.EXECUTION_STATUS_CANCELLED


def test_rate_limit_engages_with_a_retry_hint_and_recovers(database_url: str, clock: FakeClock) -> None:
    limits = {"rate_limit_per_s": 2.0, "rate_limit_burst": 3, "expensive_rate_limit_per_s": 0.1}
    with (
        serve(database_url, clock, auth_tokens=AUTH_TOKENS, expensive_rate_limit_burst=1, **limits) as service,
        grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel,
        httpx.Client(base_url=f"http://127.0.0.1:{service.http_port}", timeout=30) as http,
    ):
        stub = pb_grpc.ScheduleServiceStub(channel)
        alpha = tuple(bearer("alpha-secret").items())
        for _ in range(3):
            stub.ListHandlers(pb.ListHandlersRequest(), metadata=alpha)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListHandlers(pb.ListHandlersRequest(), metadata=alpha)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        limited = http.get("/api/handlers", headers=bearer("alpha-secret"))
        assert limited.status_code == 429 and limited.json()["code"] == "RESOURCE_EXHAUSTED"
        assert int(limited.headers["retry-after"]) >= 1
        # Another caller is not slowed down by alpha.
        assert http.get("/api/handlers", headers=bearer("beta-secret")).status_code == 200
        # Expensive calls have their own, stricter bucket.
        _register(stub, "runner", "beta-secret")
        assert http.post("/api/tasks/runner/run", headers=bearer("beta-secret")).status_code == 200
        slow = http.post("/api/tasks/runner/run", headers=bearer("beta-secret"))
        assert slow.status_code == 429 and int(slow.headers["retry-after"]) >= 9

        clock.advance(dt.timedelta(seconds=1))
        assert http.get("/api/handlers", headers=bearer("alpha-secret")).status_code == 200
        clock.advance(dt.timedelta(seconds=10))
        assert http.post("/api/tasks/runner/run", headers=bearer("beta-secret")).status_code == 200


def test_open_mode_on_a_public_address_is_refused_and_logged(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SCHEDULE_GRPC_ADDRESS": "0.0.0.0:0",
        "SCHEDULE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    env.pop("SCHEDULE_AUTH_TOKENS", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "server.py")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "refusing to serve without credentials on non-loopback 0.0.0.0:0" in result.stderr
    assert "SCHEDULE_ALLOW_OPEN" in result.stderr


def test_open_mode_on_a_public_address_runs_when_told_to(
    sqlite_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING),
        serve(sqlite_url, clock, grpc_address="0.0.0.0:0", allow_open=True) as service,
        grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        assert pb_grpc.ScheduleServiceStub(channel).ListTasks(pb.ListTasksRequest()).tasks == []
    assert any("running open" in record.getMessage() for record in caplog.records)


# --- mutual TLS -------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, bytes]:
    """A CA, a server certificate, client certificates it signed, and one from a stranger CA."""
    ca_key, rogue_key = _key(), _key()
    ca = _cert("test-ca", ca_key, None, ca=True)
    rogue_ca = _cert("rogue-ca", rogue_key, None, ca=True)
    files: dict[str, bytes] = {"ca": _pem(ca)}
    server_key = _key()
    files["server_cert"], files["server_key"] = (
        _pem(_cert("localhost", server_key, (ca, ca_key), server=True)),
        _pem_key(server_key),
    )
    for name, issuer in [("billing", (ca, ca_key)), ("ops", (ca, ca_key)), ("mallory", (rogue_ca, rogue_key))]:
        key = _key()
        files[f"{name}_cert"], files[f"{name}_key"] = _pem(_cert(name, key, issuer)), _pem_key(key)
    for name, content in files.items():
        (tmp_path / f"{name}.pem").write_bytes(content)
    return files


@pytest.fixture
def mtls(pki: dict[str, bytes], tmp_path: Path, sqlite_url: str, clock: FakeClock) -> Iterator[Replica]:
    with serve(
        sqlite_url,
        clock,
        grpc_tls_cert_file=str(tmp_path / "server_cert.pem"),
        grpc_tls_key_file=str(tmp_path / "server_key.pem"),
        grpc_tls_client_ca_file=str(tmp_path / "ca.pem"),
        tls_admin_names="ops",
        auth_tokens=AUTH_TOKENS,
    ) as service:
        yield service


def _tls_stub(
    service: Replica, pki: dict[str, bytes], client: str | None
) -> tuple[grpc.Channel, pb_grpc.ScheduleServiceStub]:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"],
        private_key=pki[f"{client}_key"] if client else None,
        certificate_chain=pki[f"{client}_cert"] if client else None,
    )
    channel = grpc.secure_channel(f"127.0.0.1:{service.port}", credentials)
    return channel, pb_grpc.ScheduleServiceStub(channel)


def test_mtls_accepts_a_client_certificate_and_names_the_caller(mtls: Replica, pki: dict[str, bytes]) -> None:
    channel, stub = _tls_stub(mtls, pki, "billing")
    with channel:
        metadata = struct_pb2.Struct()
        metadata.update({"url": "http://127.0.0.1:9/"})
        task = stub.RegisterTask(
            pb.RegisterTaskRequest(name="invoices", schedule="@daily", handler="http", metadata=metadata), timeout=10
        ).task
        assert task.owner == "billing"
        assert _code(lambda: stub.InitializeDefaultTasks(pb.InitializeDefaultTasksRequest(), timeout=10)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
    channel, admin = _tls_stub(mtls, pki, "ops")
    with channel:
        admin.DisableTask(pb.DisableTaskRequest(name="invoices"), timeout=10)


@pytest.mark.parametrize("client", [None, "mallory"])
def test_mtls_refuses_a_missing_or_foreign_certificate(
    mtls: Replica, pki: dict[str, bytes], client: str | None
) -> None:
    channel, stub = _tls_stub(mtls, pki, client)
    with channel:
        assert _code(lambda: stub.ListTasks(pb.ListTasksRequest(), timeout=10)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_server_still_serves_http_callers_with_tokens(mtls: Replica) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{mtls.http_port}", timeout=30) as http:
        assert http.get("/api/tasks").status_code == 401
        assert http.get("/api/tasks", headers=bearer("alpha-secret")).status_code == 200


def test_failed_authentication_is_throttled_per_peer(database_url: str, clock: FakeClock) -> None:
    throttle = {"auth_failure_burst": 5, "auth_failure_per_s": 0.5}
    with (
        serve(database_url, clock, auth_tokens=AUTH_TOKENS, **throttle) as service,
        grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel,
        httpx.Client(base_url=f"http://127.0.0.1:{service.http_port}", timeout=30) as http,
    ):
        stub = pb_grpc.ScheduleServiceStub(channel)
        wrong = tuple(bearer("guess").items())
        codes = [_code(lambda: stub.ListTasks(pb.ListTasksRequest(), metadata=wrong)) for _ in range(8)]
        assert codes[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
        assert codes[5:] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3  # guessing stops paying off
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListTasks(pb.ListTasksRequest(), metadata=tuple(bearer("alpha-secret").items()))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # until the peer's bucket refills
        assert "failed authentications" in (caught.value.details() or "")
        # the shim names its client's address: the same address over HTTP is refused too
        response = http.get("/api/tasks", headers=bearer("alpha-secret"))
        assert response.status_code == 429
        time.sleep(2.2)  # one failure's worth refills at 0.5 per second
        assert stub.ListTasks(pb.ListTasksRequest(), metadata=tuple(bearer("alpha-secret").items())).tasks == []
