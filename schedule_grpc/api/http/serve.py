"""Runs the shim's ASGI app with uvicorn in a thread of the service, on a socket bound here (port 0 works)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from schedule_grpc.api.http.app import ShimApp


def bind(address: str) -> socket.socket:
    """A listening TCP socket for ``host:port`` (``[::]`` takes IPv4 too)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP; without it the
    # response head and body wait on each other (Nagle and delayed ACK: +40 ms a call).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host, int(port)))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class HttpShim:
    """The HTTP listener; start() returns once it accepts connections, stop() drains and closes it."""

    def __init__(self, app: ShimApp, address: str, *, grace_s: float) -> None:
        self._socket = bind(address)
        self.port: int = self._socket.getsockname()[1]
        # log_config=None keeps the service's own logging set-up; access logs are off (the gRPC side logs).
        config = uvicorn.Config(
            app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=max(1, int(grace_s))
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="http-shim", daemon=True
        )

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP shim did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._socket.close()
