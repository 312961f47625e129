"""Real servers on loopback for the handler tests: a JSON HTTP server with realistic fixtures (an MCP
registry, an APIs.guru list.json, an OpenAI-compatible embeddings endpoint) and a gRPC server with
health, reflection and optional TLS that records the metadata of each call."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from schedule_grpc.handlers.base import HandlerContext
from schedule_grpc.security.egress import EgressPolicy
from schedule_grpc.store.handler_data import HANDLER_DATA

# Handlers under test call real servers on loopback, which the default policy refuses.
LOOPBACK = EgressPolicy.parse(allow=["127.0.0.0/8", "::1/128"])

Route = Callable[[dict[str, str], Any], tuple[int, Any]]


def context(
    name: str, metadata: dict[str, Any] | None = None, *, at: datetime, attempt: int = 1, timeout_s: float = 60
) -> HandlerContext:
    return HandlerContext(
        execution_id="exec-test",
        task_id="task-test",
        task_name=name,
        scheduled_for=at,
        attempt=attempt,
        metadata=metadata or {},
        timeout=timedelta(seconds=timeout_s),
        data=HANDLER_DATA,
    )


class JsonServer:
    """A real HTTP server on 127.0.0.1 answering JSON from per-path routes; counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                server.hits[parts.path] = server.hits.get(parts.path, 0) + 1
                route = server.routes.get(parts.path)
                status, payload = route(query, body) if route else (404, {"error": "not found"})
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- a webhook receiver -------------------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: bytes = b'{"ok": true}'
    content_type: str = "application/json"
    delay_s: float = 0.0
    location: str = ""


@dataclass
class Receiver:
    """A real webhook receiver on loopback (127.0.0.1 unless told): records each request and its connection."""

    answer: Answer = field(default_factory=Answer)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)

    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                receiver.peers.add(self.client_address)
                answer = receiver.answer
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                self.send_response(answer.status)
                self.send_header("content-type", answer.content_type)
                self.send_header("content-length", str(len(answer.body)))
                if answer.location:
                    self.send_header("location", answer.location)
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 512

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (the timeout test) is not an error here

        self.server = Server((self.host, 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook", host: str = "") -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the MCP registry -----------------------------------------------------------------------------


def mcp_entry(i: int, *, latest: bool = True, version: str = "1.0.0") -> dict[str, Any]:
    """One entry of GET /v0/servers in the official registry's format."""
    return {
        "server": {
            "$schema": "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json",
            "name": f"io.github.example{i}/mcp-server-{i}",
            "description": f"MCP server number {i}: tools for example {i}",
            "version": version,
            "repository": {"url": f"https://github.com/example{i}/mcp-server-{i}", "source": "github"},
            "websiteUrl": f"https://example{i}.dev",
            "packages": [
                {
                    "registryType": "npm",
                    "identifier": f"@example{i}/mcp-server",
                    "version": version,
                    "transport": {"type": "stdio"},
                }
            ],
            "remotes": [{"type": "streamable-http", "url": f"https://mcp.example{i}.dev/mcp"}],
        },
        "_meta": {
            "io.modelcontextprotocol.registry/official": {
                "status": "active",
                "publishedAt": "2025-09-16T16:43:44.243434Z",
                "updatedAt": "2025-09-16T16:43:44.243434Z",
                "isLatest": latest,
            }
        },
    }


@dataclass
class McpRegistry:
    """Serves ``entries`` by pages of ``limit`` with opaque cursors; ``fail_page`` answers 500."""

    entries: list[dict[str, Any]]
    fail_page: int | None = None
    pages_served: list[int] = field(default_factory=list)

    def __call__(self, query: dict[str, str], _body: Any) -> tuple[int, Any]:
        limit = int(query.get("limit", "30"))
        start = int(query["cursor"].rpartition(":")[2]) if "cursor" in query else 0
        page = start // limit + 1
        self.pages_served.append(page)
        if page == self.fail_page:
            return 500, {"title": "Internal Server Error", "status": 500}
        chunk = self.entries[start : start + limit]
        metadata: dict[str, Any] = {"count": len(chunk)}
        if start + limit < len(self.entries):
            metadata["nextCursor"] = f"{chunk[-1]['server']['name']}:{start + limit}"
        return 200, {"servers": chunk, "metadata": metadata}


def apis_guru_list(n: int, *, broken: int = 0) -> dict[str, Any]:
    """An APIs.guru list.json with ``n`` APIs; the first ``broken`` have a malformed swaggerUrl."""
    listing: dict[str, Any] = {}
    for i in range(n):
        name = f"api{i}.example.com" if i % 3 else f"api{i}.example.com:events"
        url = "not a url" if i < broken else f"https://api.apis.guru/v2/specs/api{i}.example.com/2.{i}/openapi.json"
        listing[name] = {
            "added": "2017-05-30T08:34:14.000Z",
            "preferred": f"2.{i}",
            "versions": {
                f"1.{i}": {"added": "2016-01-01T00:00:00.000Z", "info": {"title": "old"}, "swaggerUrl": url},
                f"2.{i}": {
                    "added": "2017-05-30T08:34:14.000Z",
                    "info": {
                        "title": f"Example API {i}",
                        "description": f"Does example thing {i}",
                        "version": f"2.{i}",
                        "x-apisguru-categories": ["developer_tools"],
                        "x-logo": {"url": f"https://api.apis.guru/v2/cache/logo/api{i}.png"},
                    },
                    "updated": "2023-03-06T07:12:59.965Z",
                    "swaggerUrl": url,
                    "swaggerYamlUrl": url.replace(".json", ".yaml"),
                    "openapiVer": "3.0.0",
                    "link": f"https://api.apis.guru/v2/specs/api{i}.example.com/2.{i}.json",
                },
            },
        }
    return listing


# --- embeddings ---------------------------------------------------------------------------------


def vector_of(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255, 6) for b in digest[:dims]]


@dataclass
class EmbeddingsEndpoint:
    """An OpenAI-compatible /v1/embeddings: refuses a batch holding a text with POISON (400)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def __call__(self, _query: dict[str, str], body: Any) -> tuple[int, Any]:
        self.requests.append(body)
        if self.status != 200:
            return self.status, {"error": {"message": "overloaded", "type": "server_error"}}
        inputs = body["input"]
        if any("POISON" in text for text in inputs):
            return 400, {"error": {"message": "input rejected by the content filter", "type": "invalid_request_error"}}
        data = [{"object": "embedding", "index": i, "embedding": vector_of(t)} for i, t in enumerate(inputs)]
        data.reverse()  # the index, not the order, says which input a vector belongs to
        return 200, {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
        }


# --- gRPC ---------------------------------------------------------------------------------------


class RecordingHealth(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1.Health/Check answering ``status`` and recording each call's metadata."""

    def __init__(self) -> None:
        self.status = health_pb2.HealthCheckResponse.SERVING
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.delay_s = 0.0

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> Any:
        self.calls.append((request.service, {k: str(v) for k, v in context.invocation_metadata()}))
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        return health_pb2.HealthCheckResponse(status=self.status)


def self_signed_certificate(directory: Path) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for localhost and 127.0.0.1, made by openssl."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert.read_bytes(), key.read_bytes()


class GrpcTestServer:
    """A real gRPC server on 127.0.0.1 with Health (recording) and reflection; TLS when given a key pair."""

    def __init__(self, tls: tuple[bytes, bytes] | None = None) -> None:
        self.health = RecordingHealth()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], self.server
        )
        if tls:
            cert, key = tls
            self.port = self.server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.stop(grace=None).wait()
