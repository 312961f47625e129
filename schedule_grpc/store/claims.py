"""The steps of one claim (``QueueStore.claim``), each a statement or two inside the claim's transaction.

1. ``due_ids``: which due pending rows to look at, manual runs first, then round-robin over task owners
   by due time, so one owner's backlog does not hide another's rows.
2. ``candidates``: those rows locked (``FOR UPDATE SKIP LOCKED`` on Postgres), at most one per task that
   must not overlap.
3. ``without_busy``: on Postgres, the tasks that must not overlap are serialised on their task row and
   looked at again, since another replica may have just started one.
4. ``start``: the chosen rows set running under the claimer's lease, and their tasks' ``last_run``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, case, exists, func, select, update

from schedule_grpc.domain.fairness import Candidate
from schedule_grpc.domain.models import Execution, ExecutionStatus, OverlapPolicy, Task, Trigger
from schedule_grpc.store.executions import _from_row as _execution
from schedule_grpc.store.tables import scheduled_tasks as t
from schedule_grpc.store.tables import task_executions as e
from schedule_grpc.store.tasks import _from_row as _task

Among = Callable[[ColumnElement[str], str], ColumnElement[bool]]


def due_ids(now: datetime, limit: int) -> Select[Any]:
    """The ids of up to ``limit`` due pending executions, in the order a claim looks at them."""
    running = e.alias("running")
    blocked = exists().where(running.c.task_id == e.c.task_id, running.c.status == ExecutionStatus.RUNNING.value)
    not_manual = e.c.trigger != Trigger.MANUAL.value
    ranked = (
        select(
            e.c.id,
            e.c.due_at,
            not_manual.label("not_manual"),
            func.row_number().over(partition_by=t.c.owner, order_by=(not_manual, e.c.due_at, e.c.id)).label("rank"),
        )
        .join(t, t.c.id == e.c.task_id)
        .where(e.c.status == ExecutionStatus.PENDING.value, e.c.due_at <= now)
        .where((t.c.overlap_policy == OverlapPolicy.ALLOW.value) | ~blocked)
        .subquery()
    )
    return select(ranked.c.id).order_by(ranked.c.not_manual, ranked.c.rank, ranked.c.due_at, ranked.c.id).limit(limit)


def candidates(conn: Connection, ids: list[str], among: Among) -> tuple[list[Candidate], set[str]]:
    """Locks the rows ``ids`` still pending, in that order; (the candidates, the ids of their tasks that
    must not overlap). A task that must not overlap has one candidate at most."""
    # Locked by primary key in a statement of its own: joined back to the ranking, a misestimated plan (a
    # fresh table) compared every pending row with every other one.
    query = (
        select(e.c.id, e.c.task_id, e.c.trigger, t.c.overlap_policy, t.c.handler, t.c.owner)
        .join(t, t.c.id == e.c.task_id)
        .where(among(e.c.id, "ids"), e.c.status == ExecutionStatus.PENDING.value)
        .with_for_update(of=e, skip_locked=True)
    )
    position = {x: i for i, x in enumerate(ids)}
    rows = sorted(conn.execute(query, {"ids": ids}).all(), key=lambda r: position[r.id])
    chosen: list[Candidate] = []
    exclusive: set[str] = set()
    for row in rows:
        candidate = Candidate(row.id, row.task_id, row.handler, row.owner, row.trigger == Trigger.MANUAL.value)
        if row.overlap_policy == OverlapPolicy.ALLOW.value:
            chosen.append(candidate)
        elif row.task_id not in exclusive:
            exclusive.add(row.task_id)
            chosen.append(candidate)
    return chosen, exclusive


def without_busy(conn: Connection, chosen: list[Candidate], exclusive: set[str]) -> list[Candidate]:
    """Serialises claims per task that must not overlap, then drops those another replica just started."""
    conn.execute(select(t.c.id).where(t.c.id.in_(sorted(exclusive))).order_by(t.c.id).with_for_update(key_share=True))
    busy = set(
        conn.execute(
            select(e.c.task_id)
            .where(e.c.task_id.in_(list(exclusive)), e.c.status == ExecutionStatus.RUNNING.value)
            .distinct()
        ).scalars()
    )
    return [c for c in chosen if c.task_id not in busy or c.task_id not in exclusive]


def start(
    conn: Connection, chosen: Sequence[Candidate], *, owner: str, now: datetime, lease: timedelta, among: Among
) -> tuple[list[Execution], dict[str, Task]]:
    """Sets the chosen rows running under ``owner``'s lease; (the executions started, their tasks by id)."""
    started = (
        conn.execute(
            update(e)
            .where(among(e.c.id, "ids"), e.c.status == ExecutionStatus.PENDING.value)
            .values(
                status=ExecutionStatus.RUNNING.value, started_at=now, lease_owner=owner, lease_expires_at=now + lease
            )
            .returning(*e.c),
            {"ids": [c.id for c in chosen]},
        )
        .mappings()
        .all()
    )
    executions = [_execution(r) for r in started]
    task_ids = {x.task_id for x in executions}
    if not task_ids:
        return [], {}
    # One statement sets last_run and returns the task rows (a task's last_run is its latest start).
    task_rows = conn.execute(
        update(t)
        .where(among(t.c.id, "task_ids"))
        .values(last_run=case((t.c.last_run.is_(None) | (t.c.last_run < now), now), else_=t.c.last_run))
        .returning(*t.c),
        {"task_ids": sorted(task_ids)},
    ).mappings()
    return executions, {r["id"]: _task(r) for r in task_rows}
