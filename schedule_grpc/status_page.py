"""The status page for people: tasks with their next run and last outcome, recent failures, and the
executions of the last day as a chart. Read-only, one self-contained HTML document (no scripts).

``StatusPage.render()`` returns the document; it is served at ``/status`` on the metrics address
(web.py), and the HTTP shim can serve the same call at its own ``/status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from schedule_grpc.clock import Clock
from schedule_grpc.history import HistoryFilter
from schedule_grpc.models import Execution, ExecutionStatus, Task
from schedule_grpc.service import TaskService
from schedule_grpc.store.observations import ObservationStore

MAX_TASKS = 200
RECENT_FAILURES = 10
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
class StatusView:
    now: datetime
    tasks: list[Task]
    more_tasks: bool
    latest: dict[str, Execution]
    failures: list[Execution]
    hours: list[HourBar]


class StatusPage:
    """Gathers the view from the use cases and the store, and renders it."""

    def __init__(self, tasks: TaskService, observations: ObservationStore, clock: Clock) -> None:
        self._tasks = tasks
        self._observations = observations
        self._clock = clock

    def view(self) -> StatusView:
        now = self._clock.now()
        page = self._tasks.list(page_size=MAX_TASKS, page_token="")
        tasks = list(page.items)
        failures = self._tasks.recent(
            limit=RECENT_FAILURES, page_token="", selector=HistoryFilter(statuses={ExecutionStatus.FAILED})
        ).items
        this_hour = now.replace(minute=0, second=0, microsecond=0)
        hours = []
        for back in range(HOURS - 1, -1, -1):
            start = this_hour - timedelta(hours=back)
            counts = self._observations.outcome_counts(start, start + timedelta(hours=1))
            success = counts.pop(ExecutionStatus.SUCCESS, 0)
            failed = counts.pop(ExecutionStatus.FAILED, 0)
            hours.append(HourBar(start, success, failed, sum(counts.values())))
        latest = self._observations.latest([t.id for t in tasks])
        return StatusView(now, tasks, bool(page.next_token), latest, list(failures), hours)

    def render(self) -> str:
        return render(self.view())


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _chart(hours: list[HourBar]) -> str:
    width, height, gap = 24, 120, 4
    peak = max((h.success + h.failed + h.other for h in hours), default=0) or 1
    bars = []
    for i, hour in enumerate(hours):
        x = i * (width + gap)
        y = float(height)
        for kind, count in (("success", hour.success), ("failed", hour.failed), ("other", hour.other)):
            if not count:
                continue
            h = max(1.0, count / peak * height)
            y -= h
            bars.append(
                f'<rect class="bar {kind}" x="{x}" y="{y:.1f}" width="{width}" height="{h:.1f}" '
                f'fill="{_COLOURS[kind]}"><title>{hour.start:%H}:00 {kind}: {count}</title></rect>'
            )
        if i % 3 == 0:
            bars.append(f'<text x="{x}" y="{height + 14}" font-size="10">{hour.start:%H}:00</text>')
    total_width = len(hours) * (width + gap)
    return (
        f'<svg id="chart" role="img" aria-label="Executions per hour, last 24 hours" width="{total_width}" '
        f'height="{height + 20}" viewBox="0 0 {total_width} {height + 20}">{"".join(bars)}</svg>'
    )


def render(view: StatusView) -> str:
    """The page as HTML; every value from the database is escaped."""
    rows = []
    for task in view.tasks:
        latest = view.latest.get(task.id)
        outcome = latest.status.value if latest else "never run"
        rows.append(
            "<tr>"
            f'<td class="name">{escape(task.name)}</td><td><code>{escape(task.schedule)}</code> '
            f"{escape(task.timezone)}</td>"
            f"<td>{'enabled' if task.enabled else 'disabled'}</td>"
            f"<td>{_time(task.next_run)}</td>"
            f'<td class="outcome {escape(outcome.replace(" ", "-"))}">{escape(outcome)}</td>'
            f"<td>{_time(latest.created_at if latest else None)}</td>"
            "</tr>"
        )
    failures = [
        "<tr>"
        f"<td>{escape(f.task_name)}</td><td>{_time(f.completed_at or f.created_at)}</td><td>{f.attempt}</td>"
        f"<td>{escape((f.error or '')[:300])}</td>"
        "</tr>"
        for f in view.failures
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
th, td {{ border-bottom: 1px solid #ddd; padding: .3em .8em; text-align: left; }}
.outcome.success {{ color: {_COLOURS["success"]}; }} .outcome.failed {{ color: {_COLOURS["failed"]}; }}
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
{more}<table id="tasks"><thead><tr><th>task</th><th>schedule</th><th>state</th><th>next run</th>
<th>last outcome</th><th>last execution</th></tr></thead>
<tbody>{"".join(rows) or '<tr><td colspan="6">No tasks registered.</td></tr>'}</tbody></table>
<h2>Recent failures</h2>
<table id="failures"><thead><tr><th>task</th><th>when</th><th>attempt</th><th>error</th></tr></thead>
<tbody>{"".join(failures) or '<tr><td colspan="4">No failures.</td></tr>'}</tbody></table>
</body></html>
"""
