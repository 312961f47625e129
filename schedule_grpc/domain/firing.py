"""What happens to each fire instant of a task: the catch-up and overlap rules, as pure functions.

An *occurrence* is one fire instant of one task. The engine hands occurrences to the store, which
records each as ONE execution row whose status this module decides:

* ``pending``: on time, or late but inside the task's catch-up window; the executor runs it.
* ``missed``: later than the catch-up window (the service or every leader was down). Never dropped
  silently: the row says how late it was and why it did not run.
* ``skipped``: the overlap policy refused it while an earlier execution was pending or running.

Bounds: a catch-up records at most ``MAX_MISSED_RECORDED`` missed rows per task (the oldest ones; the
last of them says until when further occurrences were missed), and at most the occurrences inside
the task's catch-up window (7 days at most, so at most ~10,100 rows for a ``* * * * *`` task).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from schedule_grpc.domain.cron import CronSchedule
from schedule_grpc.domain.models import ExecutionStatus, OverlapPolicy

# An occurrence handed on within this delay is on time even when the task's window is 0:
# the engine's own lag (a leader change, a database restart) is not a miss.
ON_TIME_GRACE = timedelta(seconds=10)
# At most this many missed occurrences of one task are recorded one by one per catch-up.
MAX_MISSED_RECORDED = 100

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Occurrence:
    """One fire instant of a task, with the schedule that produced it."""

    task_id: str
    scheduled_for: datetime
    schedule: str
    timezone: str
    note: str | None = None  # added to the row's error when the occurrence is not run


@dataclass(frozen=True)
class Decision:
    """The status an occurrence is recorded with, and why when it does not run."""

    status: ExecutionStatus
    error: str | None = None


def horizon(now: datetime, catchup_window: timedelta) -> datetime:
    """Occurrences strictly before this instant are missed."""
    return now - max(catchup_window, ON_TIME_GRACE)


def decide(
    *,
    overlap: OverlapPolicy,
    catchup_window: timedelta,
    scheduled_for: datetime,
    now: datetime,
    pending: int,
    running: int,
) -> Decision:
    """The fate of one occurrence, given how many executions of its task are pending and running."""
    if scheduled_for < horizon(now, catchup_window):
        late = now - scheduled_for
        return Decision(
            ExecutionStatus.MISSED,
            f"missed: handed on {_fmt(late)} after its instant, beyond the task's catch-up window of "
            f"{_fmt(catchup_window)} (no leader was firing)",
        )
    if overlap is OverlapPolicy.SKIP and (pending or running):
        state = "running" if running else "pending"
        reason = f"skipped: the previous execution is still {state} (overlap policy skip)"
        return Decision(ExecutionStatus.SKIPPED, reason)
    if overlap is OverlapPolicy.QUEUE_ONE and pending:
        return Decision(ExecutionStatus.SKIPPED, "skipped: an execution is already queued (overlap policy queue_one)")
    return Decision(ExecutionStatus.PENDING)


def catch_up(
    schedule: CronSchedule, task_id: str, resume_from: datetime, now: datetime, catchup_window: timedelta
) -> tuple[list[Occurrence], datetime]:
    """Occurrences in [resume_from, now] (bounded, see the module doc) and the first fire after now."""
    limit = horizon(now, catchup_window)
    found: list[Occurrence] = []
    instants = _from(schedule, resume_from)
    t = next(instants)
    while t < limit:
        if len(found) == MAX_MISSED_RECORDED:
            note = (
                f"further occurrences until {limit.isoformat()} were also missed and are not recorded one by one "
                f"(at most {MAX_MISSED_RECORDED} per catch-up)"
            )
            found[-1] = dataclasses.replace(found[-1], note=note)
            instants = _from(schedule, limit)
            t = next(instants)
            break
        found.append(Occurrence(task_id, t, schedule.expression, schedule.timezone))
        t = next(instants)
    while t <= now:
        found.append(Occurrence(task_id, t, schedule.expression, schedule.timezone))
        t = next(instants)
    return found, t


def _from(schedule: CronSchedule, instant: datetime) -> Iterator[datetime]:
    """Fire instants at or after ``instant``."""
    return schedule.iter_after(instant - _TICK)


def _fmt(value: timedelta) -> str:
    return f"{value.total_seconds():g}s"
