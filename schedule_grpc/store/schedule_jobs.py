"""Batched writes to APScheduler's job table (the engine's derived state; the leader is its only writer)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, Table, bindparam

from schedule_grpc.store.db import translate_errors


def write_job_rows(engine: Engine, table: Table, rows: Sequence[tuple[str, float | None, bytes]]) -> None:
    """Updates many rows of the scheduler's job table (id, next run timestamp, state) in one transaction."""
    if not rows:
        return
    query = (
        table.update()
        .where(table.c.id == bindparam("job_id"))
        .values(next_run_time=bindparam("job_next"), job_state=bindparam("job_state_"))
    )
    with translate_errors(), engine.begin() as conn:
        conn.execute(query, [{"job_id": i, "job_next": n, "job_state_": s} for i, n, s in rows])
