"""A small HTTP server on SCHEDULE_METRICS_ADDRESS: ``/metrics`` (Prometheus) and ``/status`` (HTML).

It is separate from the HTTP/JSON API so that scrapes and the status page never queue behind API
calls; both are read-only and unauthenticated, so bind the address to a private interface.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from schedule_grpc.domain.errors import ScheduleError

log = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into its parts; ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class ObservabilityServer:
    """Binds at construction (a taken port fails start-up); serves from start() to stop()."""

    def __init__(
        self,
        address: str,
        registry: CollectorRegistry,
        *,
        before_scrape: Callable[[], None],
        status_page: Callable[[], str],
    ) -> None:
        host, port = split_address(address)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    try:
                        before_scrape()
                    except ScheduleError as error:  # the database gauges say so; serve the rest
                        log.warning("metrics catch-up failed", extra={"error": str(error)})
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._reply(200, content_type, encoder(registry))
                elif path in ("/status", "/status/"):
                    try:
                        page = status_page()
                    except ScheduleError as error:
                        self._reply(503, "text/plain; charset=utf-8", f"unavailable: {error}\n".encode())
                        return
                    self._reply(200, "text/html; charset=utf-8", page.encode())
                else:
                    self._reply(404, "text/plain; charset=utf-8", b"not found: try /metrics or /status\n")

            def _reply(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http %s", format % args)

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True

        self._server = Server((host, port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
