"""A remote-lane handler for the executor tests, and the loopback HTTP receiver it calls.

``AsyncPost`` POSTs the execution id to ``metadata.url`` with a bare asyncio connection and returns the
status code. The receiver records when each request arrived and how many were in flight; a request to
``/hold/<seconds>`` is answered only after that long, or never if the caller goes away first.
"""

from __future__ import annotations

import asyncio
import select
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed, Lane


class AsyncPost:
    name = "async-post"
    description = "POSTs the execution id to metadata.url (test)"
    category = "test"
    lane: Lane = "remote"
    closed = 0

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        pass

    def run(self, context: HandlerContext) -> JSON:
        return asyncio.run(self.run_async(context))

    async def run_async(self, context: HandlerContext) -> JSON:
        url = urlsplit(str(context.metadata["url"]))
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            body = context.execution_id.encode()
            writer.write(
                f"POST {url.path} HTTP/1.0\r\nHost: {url.netloc}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            )
            await writer.drain()
            status_line = await reader.readline()
            await reader.read()
        finally:
            writer.close()
        if not status_line:
            raise HandlerFailed("the receiver closed the connection", ErrorCategory.NETWORK)
        return int(status_line.split()[1])

    async def close(self) -> None:
        AsyncPost.closed += 1


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # a burst of connections must not overflow the listen backlog
    daemon_threads = True


class Receiver:
    """A loopback HTTP server that records what reaches it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived: dict[str, float] = {}  # execution id -> monotonic arrival
        self.gone: set[str] = set()  # callers that went away while held
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = threading.Event()
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with receiver.lock:
                    receiver.arrived[body] = time.monotonic()
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                try:
                    if self.path.startswith("/hold/"):
                        deadline = time.monotonic() + float(self.path.rsplit("/", 1)[1])
                        while not receiver.release.is_set() and time.monotonic() < deadline:
                            readable, _, _ = select.select([self.connection], [], [], 0.05)
                            if readable and not self.connection.recv(1):  # the caller closed its end
                                with receiver.lock:
                                    receiver.gone.add(body)
                                return
                    self.send_response(200)
                    self.end_headers()
                finally:
                    with receiver.lock:
                        receiver.in_flight -= 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handle)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
