"""Handlers of scripts/drill_crash.py, importable by name in the replicas' worker processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from schedule_grpc.domain.models import JSON
from schedule_grpc.handlers.base import HandlerContext, Lane


class DrillWork:
    """Sleeps metadata.seconds: long enough that a kill finds executions in flight."""

    name = "drill-work"
    description = "drill: sleeps"
    category = "drill"

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        pass

    def run(self, context: HandlerContext) -> JSON:
        time.sleep(float(str(context.metadata.get("seconds", 0.3))))
        return {"occurrence": context.scheduled_for.isoformat()}


class DrillRemoteWork(DrillWork):
    """The same sleep in the remote lane: an asyncio task on the replica's event loop."""

    name = "drill-work-remote"
    lane: Lane = "remote"

    async def run_async(self, context: HandlerContext) -> JSON:
        await asyncio.sleep(float(str(context.metadata.get("seconds", 0.3))))
        return {"occurrence": context.scheduled_for.isoformat()}


class DrillNoop:
    """Does nothing: its execution time is all overhead."""

    name = "drill-noop"
    description = "drill: no-op"
    category = "drill"

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        pass

    def run(self, context: HandlerContext) -> JSON:
        return None
