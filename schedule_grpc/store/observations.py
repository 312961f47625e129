"""Read-only queries for the metrics scrape and the status page: each one an index range or lookup."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from schedule_grpc.domain.models import DeadLetter, Execution, ExecutionStatus
from schedule_grpc.store.db import translate_errors
from schedule_grpc.store.dead_letters import _from_row as _dead_letter
from schedule_grpc.store.executions import _from_row
from schedule_grpc.store.tables import dead_letters as dl
from schedule_grpc.store.tables import leader_epochs as le
from schedule_grpc.store.tables import scheduled_tasks as t
from schedule_grpc.store.tables import task_executions as e


@dataclass(frozen=True)
class Snapshot:
    """What the scrape reports as gauges: the state of the shared database, the same on every replica."""

    dead_letters: int
    running: int
    pending: int
    leader_epoch: int | None
    leader_replica: str | None
    oldest_execution: datetime | None


class ObservationStore:
    """Counts and samples of the executions tables."""

    def __init__(self, database: Engine) -> None:
        self._database = database

    def existing_tasks(self, names: Iterable[str], batch: int = 500) -> set[str]:
        """Which of ``names`` are tasks now (the metrics drop the series of the others)."""
        wanted, found = sorted(set(names)), set[str]()
        with translate_errors(), self._database.connect() as conn:
            for start in range(0, len(wanted), batch):
                chunk = wanted[start : start + batch]
                found.update(conn.execute(select(t.c.name).where(t.c.name.in_(chunk))).scalars())
        return found

    def snapshot(self) -> Snapshot:
        def count_status(status: ExecutionStatus) -> int:
            # the (status, created_at, id) index answers this without reading the table
            return int(conn.execute(select(func.count()).where(e.c.status == status.value)).scalar_one())

        with translate_errors(), self._database.connect() as conn:
            leader = conn.execute(select(le.c.epoch, le.c.replica_id).order_by(le.c.epoch.desc()).limit(1)).first()
            return Snapshot(
                dead_letters=int(conn.execute(select(func.count()).select_from(dl)).scalar_one()),
                running=count_status(ExecutionStatus.RUNNING),
                pending=count_status(ExecutionStatus.PENDING),
                leader_epoch=leader.epoch if leader else None,
                leader_replica=leader.replica_id if leader else None,
                oldest_execution=conn.execute(
                    select(e.c.created_at).order_by(e.c.created_at, e.c.id).limit(1)
                ).scalar(),
            )

    def latest(self, task_ids: Sequence[str]) -> dict[str, Execution]:
        """The newest execution of each task that has one."""
        found: dict[str, Execution] = {}
        with translate_errors(), self._database.connect() as conn:
            for task_id in task_ids:
                query = select(e).where(e.c.task_id == task_id).order_by(e.c.created_at.desc(), e.c.id.desc()).limit(1)
                row = conn.execute(query).mappings().first()
                if row is not None:
                    found[task_id] = _from_row(row)
        return found

    def outcome_counts(self, start: datetime, end: datetime) -> dict[ExecutionStatus, int]:
        """Executions created in [start, end), by status."""
        query = (
            select(e.c.status, func.count()).where(e.c.created_at >= start, e.c.created_at < end).group_by(e.c.status)
        )
        with translate_errors(), self._database.connect() as conn:
            return {ExecutionStatus(status): int(n) for status, n in conn.execute(query)}

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The newest dead letters (the status page's list)."""
        query = select(dl).order_by(dl.c.created_at.desc(), dl.c.id.desc()).limit(limit)
        with translate_errors(), self._database.connect() as conn:
            return [_dead_letter(row) for row in conn.execute(query).mappings()]
