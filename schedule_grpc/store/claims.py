"""The steps of one claim (``QueueStore.claim``), each a statement or two inside the claim's transaction.

1. ``due_ids``: which due pending rows to look at, manual runs first, then round-robin over task owners
   by due time, so one owner's backlog does not hide another's rows.
2. ``candidates``: those rows locked (``FOR UPDATE SKIP LOCKED`` on Postgres), at most one per task that
   must not overlap.
3. ``without_busy``: on Postgres, the tasks that must not overlap are serialised on their task row and
   looked at again, since another replica may have just started one.
4. ``start``: the chosen rows due by now set running under the claimer's lease, and their tasks'
   ``last_run``; those due later (a claim looks ahead by the fire lead) are *held*: still pending, under the
   claimer's lease, until ``begin`` starts them at their instant.

A held row is pending with a live lease: no other claim takes it, and it counts as busy for a task that
must not overlap. A cancellation (CancelExecution, DisableTask) ends it like any pending row, so ``begin``
does not start it; a claimer that dies leaves it to whoever claims after its lease expires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, RowMapping, Select, case, exists, func, select, update

from schedule_grpc.domain.fairness import Candidate
from schedule_grpc.domain.models import Execution, ExecutionStatus, OverlapPolicy, Task, Trigger
from schedule_grpc.store.executions import _from_row as _execution
from schedule_grpc.store.tables import scheduled_tasks as t
from schedule_grpc.store.tables import task_executions as e
from schedule_grpc.store.tasks import _from_row as _task

Among = Callable[[ColumnElement[str], str], ColumnElement[bool]]


def free(rows: Any, now: datetime) -> ColumnElement[bool]:
    """Pending ``rows`` no claimer holds (never held, or held under a lease that expired)."""
    held: ColumnElement[bool] = rows.c.lease_owner.is_(None) | (rows.c.lease_expires_at < now)
    return held


def busy(rows: Any, now: datetime) -> ColumnElement[bool]:
    """``rows`` that occupy their task: running, or held for their instant under a live lease."""
    held = (rows.c.status == ExecutionStatus.PENDING.value) & (rows.c.lease_expires_at >= now)
    occupying: ColumnElement[bool] = (rows.c.status == ExecutionStatus.RUNNING.value) | held
    return occupying


def due_ids(now: datetime, until: datetime, limit: int) -> Select[Any]:
    """The ids of up to ``limit`` pending executions due by ``until`` that nobody holds, in the order a claim
    looks at them."""
    running = e.alias("running")
    blocked = exists().where(running.c.task_id == e.c.task_id, busy(running, now))
    not_manual = e.c.trigger != Trigger.MANUAL.value
    ranked = (
        select(
            e.c.id,
            e.c.due_at,
            not_manual.label("not_manual"),
            func.row_number().over(partition_by=t.c.owner, order_by=(not_manual, e.c.due_at, e.c.id)).label("rank"),
        )
        .join(t, t.c.id == e.c.task_id)
        .where(e.c.status == ExecutionStatus.PENDING.value, e.c.due_at <= until, free(e, now))
        .where((t.c.overlap_policy == OverlapPolicy.ALLOW.value) | ~blocked)
        .subquery()
    )
    return select(ranked.c.id).order_by(ranked.c.not_manual, ranked.c.rank, ranked.c.due_at, ranked.c.id).limit(limit)


def candidates(conn: Connection, ids: list[str], now: datetime, among: Among) -> tuple[list[Candidate], set[str]]:
    """Locks the rows ``ids`` still pending, in that order; (the candidates, the ids of their tasks that
    must not overlap). A task that must not overlap has one candidate at most."""
    # Locked by primary key in a statement of its own: joined back to the ranking, a misestimated plan (a
    # fresh table) compared every pending row with every other one.
    query = (
        select(e.c.id, e.c.task_id, e.c.trigger, t.c.overlap_policy, t.c.handler, t.c.owner)
        .join(t, t.c.id == e.c.task_id)
        .where(among(e.c.id, "ids"), e.c.status == ExecutionStatus.PENDING.value, free(e, now))
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


def without_busy(conn: Connection, chosen: list[Candidate], exclusive: set[str], now: datetime) -> list[Candidate]:
    """Serialises claims per task that must not overlap, then drops those another replica just started
    (or holds for its instant)."""
    conn.execute(select(t.c.id).where(t.c.id.in_(sorted(exclusive))).order_by(t.c.id).with_for_update(key_share=True))
    occupied = set(
        conn.execute(select(e.c.task_id).where(e.c.task_id.in_(list(exclusive)), busy(e, now)).distinct()).scalars()
    )
    return [c for c in chosen if c.task_id not in occupied or c.task_id not in exclusive]


def start(
    conn: Connection, chosen: Sequence[Candidate], *, owner: str, now: datetime, lease: timedelta, among: Among
) -> tuple[list[Execution], dict[str, Task]]:
    """Sets the chosen rows due by ``now`` running under ``owner``'s lease and holds the others (pending, under
    that lease); (the executions started or held, their tasks by id)."""
    ids = {"ids": [c.id for c in chosen]}
    mine = (among(e.c.id, "ids"), e.c.status == ExecutionStatus.PENDING.value)
    started = (
        conn.execute(
            update(e)
            .where(*mine, e.c.due_at <= now)
            .values(
                status=ExecutionStatus.RUNNING.value, started_at=now, lease_owner=owner, lease_expires_at=now + lease
            )
            .returning(*e.c),
            ids,
        )
        .mappings()
        .all()
    )
    held: Sequence[RowMapping] = []
    if len(started) < len(chosen):
        held = (
            conn.execute(
                update(e)
                .where(*mine, e.c.due_at > now)
                .values(lease_owner=owner, lease_expires_at=now + lease)
                .returning(*e.c),
                ids,
            )
            .mappings()
            .all()
        )
    executions = [_execution(r) for r in [*started, *held]]
    if not executions:
        return [], {}
    tasks = started_tasks(conn, {r["task_id"] for r in started}, now, among, returning=True)
    waiting = sorted({r["task_id"] for r in held} - tasks.keys())
    if waiting:
        tasks.update(
            (r["id"], _task(r))
            for r in conn.execute(select(t).where(among(t.c.id, "ids")), {"ids": waiting}).mappings()
        )
    return executions, tasks


def begin(
    conn: Connection, ids: Sequence[str], *, owner: str, now: datetime, lease: timedelta, among: Among
) -> set[str]:
    """Starts the executions ``ids`` that ``owner`` holds and that are still pending (not cancelled meanwhile),
    each at its instant or ``now`` when that has passed; their ids. Their tasks' ``last_run`` is the caller's
    to set (``started_tasks``), once the calls are out."""
    rows = conn.execute(
        update(e)
        .where(among(e.c.id, "ids"), e.c.status == ExecutionStatus.PENDING.value, e.c.lease_owner == owner)
        .values(
            status=ExecutionStatus.RUNNING.value,
            started_at=case((e.c.due_at > now, e.c.due_at), else_=now),  # begun ahead: starts at its instant
            lease_expires_at=now + lease,
        )
        .returning(e.c.id),
        {"ids": list(ids)},
    ).scalars()
    return set(rows)


def started_tasks(
    conn: Connection, task_ids: set[str], now: datetime, among: Among, *, returning: bool
) -> dict[str, Task]:
    """Sets the ``last_run`` of tasks whose executions started at ``now`` (a task's last_run is its latest
    start), in one statement; their rows when ``returning``."""
    if not task_ids:
        return {}
    statement = (
        update(t)
        .where(among(t.c.id, "task_ids"))
        .values(last_run=case((t.c.last_run.is_(None) | (t.c.last_run < now), now), else_=t.c.last_run))
    )
    if not returning:
        conn.execute(statement, {"task_ids": sorted(task_ids)})
        return {}
    rows = conn.execute(statement.returning(*t.c), {"task_ids": sorted(task_ids)}).mappings()
    return {r["id"]: _task(r) for r in rows}
