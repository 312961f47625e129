"""The executions table as a work queue: enqueue, claim with a lease, renew, record, recover, cancel.

Postgres: a claim locks candidate rows ``FOR UPDATE SKIP LOCKED``, so replicas never wait on each
other's rows, and takes the task row (``FOR NO KEY UPDATE``) before starting an execution of a task that
must not overlap, so two replicas cannot both start one. SQLite serves a single replica: there the claim
is a conditional update (``status = 'pending'``) and only the replica's dispatcher thread claims.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    func,
    insert,
    select,
    text,
    update,
)

from schedule_grpc.domain.fairness import Candidate
from schedule_grpc.domain.lifecycle import Decision
from schedule_grpc.domain.models import Execution, ExecutionStatus, Outcome, Task, Trigger
from schedule_grpc.store import claims
from schedule_grpc.store.db import among, translate_errors
from schedule_grpc.store.executions import _from_row as _execution
from schedule_grpc.store.executions import _to_row as _execution_row
from schedule_grpc.store.executions import ms
from schedule_grpc.store.outcomes import (
    Claimed,
    Finished,
    Recorded,
    end_orphan,
    finish_many,
    follow_up,
    record_one,
)
from schedule_grpc.store.tables import scheduled_tasks as t
from schedule_grpc.store.tables import task_executions as e
from schedule_grpc.store.tasks import _from_row as _task

__all__ = ["EXECUTIONS_CHANNEL", "Claimed", "Finished", "QueueStore", "Recorded"]

# Postgres channel announcing that execution rows are due (payload unused).
EXECUTIONS_CHANNEL = "schedule_executions"


Decide = Callable[[Claimed, Outcome], Decision]
Admit = Callable[[Sequence[Candidate]], Sequence[Candidate]]


class QueueStore:
    """Moves execution rows through pending → running → finished."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def _among(self, column: ColumnElement[str], name: str) -> ColumnElement[bool]:
        return among(column, name, postgres=self._postgres)

    def notify(self, conn: Connection) -> None:
        """Wakes the executors of every replica once ``conn``'s transaction commits (Postgres)."""
        if self._postgres:
            conn.execute(text("SELECT pg_notify(:c, '')"), {"c": EXECUTIONS_CHANNEL})

    def enqueue(self, execution: Execution) -> Execution:
        """Inserts a pending execution and wakes the executors."""
        with translate_errors(), self._engine.begin() as conn:
            conn.execute(insert(e).values(_execution_row(execution)))
            self.notify(conn)
        return execution

    def task(self, task_id: str) -> Task | None:
        with translate_errors(), self._engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == task_id)).mappings().first()
        return _task(row) if row else None

    def next_due(self, now: datetime) -> datetime | None:
        """When the earliest pending execution that no executor holds is due."""
        with translate_errors(), self._engine.connect() as conn:
            value: datetime | None = conn.execute(
                select(func.min(e.c.due_at)).where(e.c.status == ExecutionStatus.PENDING.value, claims.free(e, now))
            ).scalar()
        return value

    def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        admit: Admit | None = None,
        until: datetime | None = None,
    ) -> Sequence[Claimed]:
        """Starts due executions under a lease held by ``owner``; sets their tasks' last_run.

        Looks at up to ``limit`` pending rows due by ``until`` (default: ``now``): manual runs first (a caller
        waits on RunTaskNow), then round-robin over task owners by due time, so one owner's backlog does not
        hide another's rows. ``admit`` picks which of them are claimed (capacity and fairness); the others stay
        pending. Those due by ``now`` start (status running); those due later are held for their instant
        (status pending, under ``owner``'s lease) until ``begin``.
        """
        with translate_errors(), self._engine.begin() as conn:
            ids: list[str] = list(conn.execute(claims.due_ids(now, until or now, limit)).scalars())
            if not ids:
                return []
            chosen, exclusive = claims.candidates(conn, ids, now, self._among)
            if exclusive and self._postgres:
                chosen = claims.without_busy(conn, chosen, exclusive, now)
            if admit is not None:
                chosen = list(admit(chosen))
            if not chosen:
                return []
            executions, tasks = claims.start(conn, chosen, owner=owner, now=now, lease=lease, among=self._among)
        order = {c.id: i for i, c in enumerate(chosen)}
        executions.sort(key=lambda x: order[x.id])
        return [Claimed(x, tasks[x.task_id]) for x in executions]

    def begin(self, *, owner: str, ids: Sequence[str], now: datetime, lease: timedelta) -> set[str]:
        """Starts the held executions ``ids`` whose instant has come; the ids of those started (the others were
        cancelled meanwhile, or their hold expired and another replica claimed them)."""
        if not ids:
            return set()
        with translate_errors(), self._engine.begin() as conn:
            return claims.begin(conn, ids, owner=owner, now=now, lease=lease, among=self._among)

    def started(self, task_ids: set[str], at: datetime) -> None:
        """Sets the ``last_run`` of tasks whose held executions began at ``at``."""
        with translate_errors(), self._engine.begin() as conn:
            claims.started_tasks(conn, task_ids, at, self._among, returning=False)

    def release(self, *, owner: str, ids: Sequence[str]) -> None:
        """Gives up ``owner``'s hold on the pending executions ``ids`` (at shutdown): others may claim them now."""
        if not ids:
            return
        with translate_errors(), self._engine.begin() as conn:
            conn.execute(
                update(e)
                .where(
                    self._among(e.c.id, "ids"), e.c.status == ExecutionStatus.PENDING.value, e.c.lease_owner == owner
                )
                .values(lease_owner=None, lease_expires_at=None),
                {"ids": list(ids)},
            )
            self.notify(conn)

    def renew(self, *, owner: str, ids: Sequence[str], now: datetime, lease: timedelta) -> set[str]:
        """Extends the leases of ``owner``'s running executions; returns those still running under it."""
        if not ids:
            return set()
        with translate_errors(), self._engine.begin() as conn:
            kept = conn.execute(
                update(e)
                .where(
                    self._among(e.c.id, "ids"), e.c.status == ExecutionStatus.RUNNING.value, e.c.lease_owner == owner
                )
                .values(lease_expires_at=now + lease)
                .returning(e.c.id),
                {"ids": list(ids)},
            ).scalars()
            return set(kept)

    def taken(self, *, owner: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` no longer run under ``owner``: cancelled, or recovered by another replica.

        A row that is gone (its task was unregistered) is not among them: its handler may finish.
        """
        if not ids:
            return set()
        mine = and_(e.c.status == ExecutionStatus.RUNNING.value, e.c.lease_owner == owner)
        with translate_errors(), self._engine.connect() as conn:
            query = select(e.c.id).where(self._among(e.c.id, "ids"), ~mine)
            return set(conn.execute(query, {"ids": list(ids)}).scalars())

    def cancel_task(self, task_id: str, *, now: datetime, reason: str, running: bool) -> list[Execution]:
        """Cancels the task's pending retries and scheduled executions (and, when ``running``, its running
        ones) with ``reason``; returns them as they were. A pending manual run is left: its caller waits."""
        which = and_(e.c.status == ExecutionStatus.PENDING.value, e.c.trigger != Trigger.MANUAL.value)
        if running:
            which = which | (e.c.status == ExecutionStatus.RUNNING.value)
        query = select(e).where(e.c.task_id == task_id, which).order_by(e.c.id)
        cancelled: list[Execution] = []
        with translate_errors(), self._engine.begin() as conn:
            for current in [_execution(r) for r in conn.execute(query.with_for_update()).mappings()]:
                values: dict[str, Any] = {
                    "status": ExecutionStatus.CANCELLED.value,
                    "completed_at": now,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "error": f"cancelled before it started: {reason}",
                }
                if current.status is ExecutionStatus.RUNNING:
                    values["error"] = f"cancelled while running: {reason}"
                    if current.started_at is not None:
                        values["duration_ms"] = ms(now - current.started_at)
                conn.execute(update(e).where(e.c.id == current.id).values(values))
                cancelled.append(current)
        return cancelled

    def record(self, owner: str, finished: Sequence[Finished]) -> list[Recorded | None]:
        """Records how ``owner``'s executions ended, with their retries and dead letters, in one transaction.

        One entry per item: None when that execution no longer runs under ``owner`` (cancelled, deleted,
        or recovered by another replica); each row's update is conditional, so a batch never overwrites
        what another replica or a cancellation wrote.
        """
        if not finished:
            return []
        with translate_errors(), self._engine.begin() as conn:
            if self._postgres and len(finished) > 1:
                done = finish_many(conn, owner, finished)
                results = [follow_up(conn, f, done.get(f.claimed.execution.id)) for f in finished]
            else:
                results = [record_one(conn, f, owner=owner) for f in finished]
            if any(r is not None and r.retry is not None for r in results):
                self.notify(conn)
            return results

    def recover(
        self, *, now: datetime, limit: int, decide: Decide, outcome: Callable[[Execution], Outcome]
    ) -> list[Recorded]:
        """Fails running executions whose lease expired before ``now`` (their replica died), retrying or
        dead-lettering each as ``decide`` says."""
        query = (
            select(e)
            .where(e.c.status == ExecutionStatus.RUNNING.value, e.c.lease_expires_at < now)
            .order_by(e.c.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        results: list[Recorded] = []
        with translate_errors(), self._engine.begin() as conn:
            expired = [_execution(r) for r in conn.execute(query).mappings()]
            if not expired:
                return []
            tasks = {
                r["id"]: _task(r)
                for r in conn.execute(select(t).where(t.c.id.in_({x.task_id for x in expired}))).mappings()
            }
            for execution in expired:
                task = tasks.get(execution.task_id)
                if task is None:  # unregistered while it ran: its replica is gone and no retry follows
                    end_orphan(conn, execution, now)
                    continue
                claimed = Claimed(execution, task)
                result = outcome(execution)
                recorded = record_one(
                    conn,
                    Finished(claimed, result, decide(claimed, result)),
                    owner=execution.lease_owner,
                    expired_before=now,
                )
                if recorded is not None:
                    results.append(recorded)
            if any(r.retry is not None for r in results):
                self.notify(conn)
        return results

    def owner(self, execution_id: str) -> tuple[bool, str | None]:
        """(whether the execution exists, the owner of its task)."""
        query = select(t.c.owner).select_from(e.outerjoin(t, t.c.id == e.c.task_id)).where(e.c.id == execution_id)
        with translate_errors(), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return (row is not None, row[0] if row else None)

    def cancel(self, execution_id: str, *, now: datetime) -> tuple[Execution | None, bool]:
        """Cancels a pending or running execution: (the execution as it now stands, whether it changed)."""
        with translate_errors(), self._engine.begin() as conn:
            row = conn.execute(select(e).where(e.c.id == execution_id)).mappings().first()
            if row is None:
                return None, False
            current = _execution(row)
            if current.status not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING):
                return current, False
            values: dict[str, Any] = {
                "status": ExecutionStatus.CANCELLED.value,
                "completed_at": now,
                "lease_owner": None,
                "lease_expires_at": None,
            }
            if current.status is ExecutionStatus.RUNNING:
                values["error"] = "cancelled while running"
                if current.started_at is not None:
                    values["duration_ms"] = ms(now - current.started_at)
            else:
                values["error"] = "cancelled before it started"
            changed = (
                conn.execute(
                    update(e)
                    .where(e.c.id == execution_id, e.c.status == current.status.value)
                    .values(values)
                    .returning(*e.c)
                )
                .mappings()
                .first()
            )
            if changed is None:  # it finished meanwhile
                again = conn.execute(select(e).where(e.c.id == execution_id)).mappings().first()
                return (_execution(again) if again else None), False
            return _execution(changed), True
