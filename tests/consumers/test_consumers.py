"""Clients nobody on the project wrote compile proto/ on its own and call a running server.

Plain `protoc` and Node (`@grpc/grpc-js` + `@grpc/proto-loader`, installed with npm under .build/) are
skipped when absent, unless SCHEDULE_TEST_REQUIRE_CLIENTS=1 (CI sets it; .ci/run installs protoc).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schedule_grpc.app import Replica

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
SERVICE_PROTO = "schedule/v1/schedule_service.proto"
NODE_PACKAGES = ROOT / ".build" / "node-consumer"
NODE_CLIENT = ["@grpc/grpc-js@^1.10.0", "@grpc/proto-loader@^0.7.13"]
REQUIRE = os.environ.get("SCHEDULE_TEST_REQUIRE_CLIENTS") == "1"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if REQUIRE:
            pytest.fail(f"{tool} is required (SCHEDULE_TEST_REQUIRE_CLIENTS=1) but not installed")
        pytest.skip(f"{tool} not installed")
    return path


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """A client's view does not depend on the database; one run is enough."""
    return sqlite_url


def test_plain_protoc_compiles_the_service_from_proto_alone(tmp_path: Path) -> None:
    protoc = _need("protoc")
    out = subprocess.run(
        [protoc, f"-I{PROTO}", f"--descriptor_set_out={tmp_path / 'set.pb'}", SERVICE_PROTO],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "set.pb").stat().st_size > 10_000


def test_python_consumer_with_its_own_stubs_calls_the_server(service: Replica, tmp_path: Path) -> None:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"--python_out={stubs}",
            f"--grpc_python_out={stubs}",
            *[SERVICE_PROTO],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stderr
    run = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "python_client.py"), str(stubs), f"127.0.0.1:{service.port}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["stubs"].startswith(str(stubs)), "the consumer used its own stubs, not the project's"
    assert answer["id"].startswith("task-")
    assert answer["listed"] == ["py-consumer"]
    assert answer["reason"] == "INVALID_SCHEDULE"


def _node_packages() -> Path:
    npm = _need("npm")
    if not (NODE_PACKAGES / "node_modules" / "@grpc" / "proto-loader").is_dir():
        NODE_PACKAGES.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(
            [npm, "install", "--prefix", str(NODE_PACKAGES), "--no-audit", "--no-fund", "--silent", *NODE_CLIENT],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert installed.returncode == 0, installed.stderr
    return NODE_PACKAGES / "node_modules"


def test_node_consumer_loads_proto_alone_and_calls_the_server(service: Replica) -> None:
    node = _need("node")
    modules = _node_packages()
    run = subprocess.run(
        [node, str(Path(__file__).parent / "node_client.js"), str(PROTO), f"127.0.0.1:{service.port}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["id"].startswith("task-")
    assert answer["overlap"] == "OVERLAP_POLICY_SKIP"
    assert answer["listed"] == ["node-consumer"]
    assert answer["code"] == 3  # INVALID_ARGUMENT
