"""Handlers that misbehave on purpose, for the executor tests. Module-level, so they pickle."""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Mapping
from pathlib import Path

from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers.base import Handler, HandlerContext, HandlerFailed


class _Base:
    name = ""
    description = "test handler"
    category = "test"

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        pass


class Noop(_Base):
    name = "noop"

    def run(self, context: HandlerContext) -> JSON:
        return {"attempt": context.attempt}


class Failing(_Base):
    name = "failing"

    def run(self, context: HandlerContext) -> JSON:
        raise HandlerFailed(f"the remote is down (attempt {context.attempt})", ErrorCategory.NETWORK)


class Sleep(_Base):
    """Writes its pid to metadata.pidFile, then sleeps metadata.seconds."""

    name = "sleep"

    def run(self, context: HandlerContext) -> JSON:
        pid_file = context.metadata.get("pidFile")
        if isinstance(pid_file, str):
            Path(pid_file).write_text(str(os.getpid()))
        time.sleep(float(str(context.metadata.get("seconds", 10))))
        return "slept"


class Allocate(_Base):
    """Allocates metadata.mb MiB and touches it."""

    name = "allocate"

    def run(self, context: HandlerContext) -> JSON:
        block = bytearray(int(str(context.metadata["mb"])) * 1024 * 1024)
        return len(block)


class Crash(_Base):
    """metadata.how: "exit" (os._exit) or "segfault"."""

    name = "crash"

    def run(self, context: HandlerContext) -> JSON:
        if context.metadata.get("how") == "segfault":
            ctypes.string_at(0)
        os._exit(3)


class Leaky(_Base):
    """Counts its runs in a module global: a fresh process per execution keeps it at 1."""

    name = "leaky"
    runs = 0

    def run(self, context: HandlerContext) -> JSON:
        Leaky.runs += 1
        return Leaky.runs


class Alerting(_Base):
    """Succeeds and reports an alert, as the built-in monitoring handlers do."""

    name = "alerting"

    def run(self, context: HandlerContext) -> JSON:
        return {"down": ["db"], "alerts": [{"subject": "service db is down", "body": "db did not answer"}]}


ALL: list[Handler] = [Noop(), Failing(), Sleep(), Allocate(), Crash(), Leaky(), Alerting()]
