"""A gRPC server as a part of the replica: started, stopped with its grace period, and its bound port."""

from __future__ import annotations

import grpc


class GrpcListener:
    """``server`` bound to ``port``; ``stop`` lets calls in flight finish for ``grace_s`` (None: at once)."""

    def __init__(self, server: grpc.Server, port: int, *, grace_s: float | None) -> None:
        self._server = server
        self.port = port
        self._grace_s = grace_s

    def add_loopback_port(self) -> int:
        """Binds one more plaintext port on 127.0.0.1 (before start) and returns it: for the HTTP shim."""
        return self._server.add_insecure_port("127.0.0.1:0")

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=self._grace_s).wait()
