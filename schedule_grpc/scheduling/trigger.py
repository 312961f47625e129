"""An APScheduler 3 trigger with crontab(5) semantics (schedule_grpc.domain.cron), pickled as text only.

Part of the APScheduler adapter (``scheduling/apscheduler.py``), which alone uses it. Stored job rows
name this module and class in their pickled state, so moving either needs a migration that empties
the job table. The adapter always gives a job its next run and its pass computes the following ones
from ``schedule``; ``get_next_fire_time`` follows the same rule for APScheduler's own calls.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger

from schedule_grpc.domain.cron import CronSchedule

_STATE_VERSION = 1
_TICK = timedelta(microseconds=1)


class CronTaskTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at the instants of a crontab(5) expression in an IANA zone.

    Zero drift: the fire after a fire is computed from the previous *scheduled* instant, never
    from when it actually ran. The pickled state is only the expression and the zone (and a
    version), so the job table holds no code objects and survives upgrades of this class.
    """

    __slots__ = ("_schedule",)

    def __init__(self, expression: str, timezone: str) -> None:
        self._schedule = CronSchedule.parse(expression, timezone)

    @property
    def expression(self) -> str:
        return self._schedule.expression

    @property
    def timezone(self) -> str:
        return self._schedule.timezone

    @property
    def schedule(self) -> CronSchedule:
        return self._schedule

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is None:
            return self._schedule.next_after(now - _TICK)  # an instant equal to now is still due
        return self._schedule.next_after(previous_fire_time)

    def __getstate__(self) -> dict[str, Any]:
        return {"version": _STATE_VERSION, "expression": self.expression, "timezone": self.timezone}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"cannot restore a trigger of state version {state.get('version')!r}")
        self._schedule = CronSchedule.parse(state["expression"], state["timezone"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronTaskTrigger) and self._schedule == other._schedule

    def __hash__(self) -> int:
        return hash(self._schedule)

    def __str__(self) -> str:
        return f"cron[{self.expression!r} in {self.timezone}]"

    def __repr__(self) -> str:
        return f"<CronTaskTrigger (expression={self.expression!r}, timezone={self.timezone!r})>"
