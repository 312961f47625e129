"""The status page for people: tasks (failing ones first) with their next run in UTC and in their own
zone, the dead-letter queue, recent failed occurrences, and the executions of the last day as a chart.
Read-only, one self-contained HTML document (no scripts).

``StatusPage.render()`` returns the document; it is served at ``/status`` on the metrics address
(web.py), and the HTTP shim can serve the same call at its own ``/status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from schedule_grpc.domain.caller import Caller
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.history import HistoryFilter
from schedule_grpc.domain.models import DeadLetter, Execution, ExecutionStatus, Task
from schedule_grpc.store.observations import ObservationStore
from schedule_grpc.usecases.tasks import Tasks

MAX_TASKS = 200
RECENT_FAILURES = 10  # failed occurrences shown
FAILED_EXECUTIONS_READ = 100  # failed executions read to find them (retries of one occurrence group together)
DEAD_LETTERS = 20
HOURS = 24
_COLOURS = {"success": "#2e7d32", "failed": "#c62828", "other": "#9e9e9e"}


@dataclass(frozen=True)
class HourBar:
    """Executions created in one hour, by outcome."""

    start: datetime
    success: int
    failed: int
    other: int


@dataclass(frozen=True)
class FailedOccurrence:
    """One occurrence of a task that failed: its latest failed attempt and how many attempts failed."""

    latest: Execution
    attempts: int


@dataclass(frozen=True)
class StatusView:
    now: datetime
    tasks: list[Task]
    more_tasks: bool
    latest: dict[str, Execution]
    failures: list[FailedOccurrence]
    hours: list[HourBar]
    dead_letters: list[DeadLetter]


def failed_occurrences(failed: list[Execution], limit: int) -> list[FailedOccurrence]:
    """Failed executions (newest first) grouped by occurrence (task, scheduled instant), newest first."""
    groups: dict[tuple[str, datetime], list[Execution]] = {}
    for execution in failed:
        groups.setdefault((execution.task_id, execution.scheduled_for), []).append(execution)
    return [FailedOccurrence(attempts[0], len(attempts)) for attempts in list(groups.values())[:limit]]


def failing_first(tasks: list[Task], latest: dict[str, Execution], dead: list[DeadLetter]) -> list[Task]:
    """Tasks whose last execution failed or that have dead letters first, then the others; by name within."""
    troubled = {letter.task_id for letter in dead}
    troubled |= {task_id for task_id, e in latest.items() if e.status is ExecutionStatus.FAILED}
    return sorted(tasks, key=lambda t: (t.id not in troubled, t.name))


class StatusPage:
    """Gathers the view from the use cases and the store, and renders it."""

    def __init__(
        self, tasks: Tasks, observations: ObservationStore, clock: Clock, *, viewer: Caller | None = None
    ) -> None:
        """``viewer``: whom the page shows tasks and executions as (None: everything, as to an admin)."""
        self._tasks = tasks
        self._viewer = viewer
        self._observations = observations
        self._clock = clock

    def view(self) -> StatusView:
        now = self._clock.now()
        page = self._tasks.list(self._viewer, page_size=MAX_TASKS, page_token="")
        failed = self._tasks.recent(
            self._viewer,
            limit=FAILED_EXECUTIONS_READ,
            page_token="",
            selector=HistoryFilter(statuses={ExecutionStatus.FAILED}),
        ).items
        this_hour = now.replace(minute=0, second=0, microsecond=0)
        hours = []
        for back in range(HOURS - 1, -1, -1):
            start = this_hour - timedelta(hours=back)
            counts = self._observations.outcome_counts(start, start + timedelta(hours=1))
            success = counts.pop(ExecutionStatus.SUCCESS, 0)
            failed_count = counts.pop(ExecutionStatus.FAILED, 0)
            hours.append(HourBar(start, success, failed_count, sum(counts.values())))
        latest = self._observations.latest([t.id for t in page.items])
        dead = self._observations.dead_letters(DEAD_LETTERS)
        tasks = failing_first(list(page.items), latest, dead)
        failures = failed_occurrences(list(failed), RECENT_FAILURES)
        return StatusView(now, tasks, bool(page.next_token), latest, failures, hours, dead)

    def render(self) -> str:
        return render(self.view())


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _next_run(task: Task) -> str:
    """UTC, and the task's own zone underneath when it is not UTC."""
    if task.next_run is None:
        return "—"
    utc = _time(task.next_run)
    if task.timezone in ("UTC", "Etc/UTC"):
        return utc
    local = task.next_run.astimezone(ZoneInfo(task.timezone))
    return f'{utc}<br><span class="local">{local:%Y-%m-%d %H:%M %Z} ({escape(task.timezone)})</span>'


def _ticks(peak: int) -> list[int]:
    """Round values from 0 to at least ``peak`` for the chart's vertical axis: at most five, in steps of 1, 2 or 5
    times a power of ten."""
    step, factors = 1, iter((2, 5 / 2, 2) * 20)
    while -(-peak // step) > 4:
        step = round(step * next(factors))
    top = max(1, -(-peak // step)) * step
    return list(range(0, top + 1, step))


def _chart(hours: list[HourBar]) -> str:
    width, height, gap, left, bottom = 24, 140, 4, 40, 34
    peak = max((h.success + h.failed + h.other for h in hours), default=0)
    ticks = _ticks(peak)
    scale = height / ticks[-1]
    parts = []
    for tick in ticks:
        y = height - tick * scale + 6
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + len(hours) * (width + gap)}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="#e0e0e0"/>'
        )
        parts.append(
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{tick}</text>'
        )
    for i, hour in enumerate(hours):
        x = left + i * (width + gap)
        y = float(height) + 6
        for kind, count in (("success", hour.success), ("failed", hour.failed), ("other", hour.other)):
            if not count:
                continue
            h = count * scale
            y -= h
            parts.append(
                f'<rect class="bar {kind}" x="{x}" y="{y:.1f}" width="{width}" height="{h:.1f}" '
                f'fill="{_COLOURS[kind]}"><title>{hour.start:%H}:00 {kind}: {count}</title></rect>'
            )
        if i % 3 == 0:
            parts.append(f'<text x="{x}" y="{height + 22}" font-size="11">{hour.start:%H}:00</text>')
    total_width = left + len(hours) * (width + gap)
    parts.append(f'<line x1="{left}" x2="{left}" y1="6" y2="{height + 6}" stroke="#616161"/>')
    parts.append(
        f'<text x="{total_width}" y="{height + bottom - 2}" font-size="11" text-anchor="end">hour (UTC)</text>'
    )
    parts.append(
        f'<text x="10" y="{height / 2 + 6:.0f}" font-size="11" transform="rotate(-90 10 {height / 2 + 6:.0f})" '
        'text-anchor="middle">executions</text>'
    )
    return (
        f'<svg id="chart" role="img" aria-label="Executions per hour, last 24 hours" width="{total_width}" '
        f'height="{height + bottom}" viewBox="0 0 {total_width} {height + bottom}">{"".join(parts)}</svg>'
    )


def _task_rows(view: StatusView) -> list[str]:
    rows = []
    for task in view.tasks:
        latest = view.latest.get(task.id)
        outcome = latest.status.value if latest else "never run"
        rows.append(
            "<tr>"
            f'<td class="name">{escape(task.name)}</td><td><code>{escape(task.schedule)}</code> '
            f"{escape(task.timezone)}</td>"
            f"<td>{'enabled' if task.enabled else 'disabled'}</td>"
            f"<td>{_next_run(task)}</td>"
            f'<td class="outcome {escape(outcome.replace(" ", "-"))}">{escape(outcome)}</td>'
            f"<td>{_time(latest.created_at if latest else None)}</td>"
            "</tr>"
        )
    return rows


def render(view: StatusView) -> str:
    """The page as HTML; every value from the database is escaped."""
    failures = [
        "<tr>"
        f"<td>{escape(f.latest.task_name)}</td><td>{_time(f.latest.scheduled_for)}</td>"
        f"<td>{_time(f.latest.completed_at or f.latest.created_at)}</td>"
        f'<td class="attempts">{f.attempts} failed (last: attempt {f.latest.attempt})</td>'
        f"<td>{escape((f.latest.error or '')[:300])}</td>"
        "</tr>"
        for f in view.failures
    ]
    letters = [
        "<tr>"
        f"<td>{escape(d.task_name)}</td><td>{_time(d.scheduled_for)}</td><td>{d.attempts}</td>"
        f"<td>{_time(d.created_at)}</td><td>{escape((d.error or '')[:300])}</td><td><code>{escape(d.id)}</code></td>"
        "</tr>"
        for d in view.dead_letters
    ]
    total = sum(h.success + h.failed + h.other for h in view.hours)
    failed = sum(h.failed for h in view.hours)
    more = f"<p>Showing the first {len(view.tasks)} tasks.</p>" if view.more_tasks else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>schedule-grpc status</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #212121; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .3em .8em; text-align: left; vertical-align: top; }}
.outcome.success {{ color: {_COLOURS["success"]}; }}
.outcome.failed {{ color: {_COLOURS["failed"]}; font-weight: bold; }}
.local {{ color: #616161; font-size: .9em; }}
.legend span {{ display: inline-block; width: .8em; height: .8em; margin: 0 .3em 0 1em; }}
</style></head>
<body>
<h1>schedule-grpc</h1>
<p id="generated">As of {_time(view.now)}. This page is read-only and refreshes every 30 seconds.</p>
<h2>Executions, last 24 hours</h2>
<p id="totals">{total} executions, {failed} failed.
<span class="legend"><span style="background:{_COLOURS["success"]}"></span>success
<span style="background:{_COLOURS["failed"]}"></span>failed
<span style="background:{_COLOURS["other"]}"></span>other</span></p>
{_chart(view.hours)}
<h2>Tasks</h2>
<p>Tasks whose last execution failed, or with dead letters, come first.</p>
{more}<table id="tasks"><thead><tr><th>task</th><th>schedule</th><th>state</th><th>next run</th>
<th>last outcome</th><th>last execution</th></tr></thead>
<tbody>{"".join(_task_rows(view)) or '<tr><td colspan="6">No tasks registered.</td></tr>'}</tbody></table>
<h2>Dead letters</h2>
<table id="dead-letters"><thead><tr><th>task</th><th>occurrence</th><th>attempts</th><th>dead-lettered</th>
<th>last error</th><th>id (redrive or discard it)</th></tr></thead>
<tbody>{"".join(letters) or '<tr><td colspan="6">The dead-letter queue is empty.</td></tr>'}</tbody></table>
<h2>Recent failed occurrences</h2>
<table id="failures"><thead><tr><th>task</th><th>occurrence</th><th>last failure</th><th>attempts</th>
<th>last error</th></tr></thead>
<tbody>{"".join(failures) or '<tr><td colspan="5">No failures.</td></tr>'}</tbody></table>
</body></html>
"""
