"""Execution rows written the way the executor writes them.

These helpers make the executor's writes directly in the database (insert pending, claim to running,
finish as success or failed, insert the retry as a new pending row with trigger retry, move to the
dead-letter queue), so that what the database derives from them (events, metrics, retention) can be
tested at chosen instants without running handlers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, select, update

from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import Execution, ExecutionStatus, Trigger
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.tables import dead_letters, scheduled_tasks, task_executions

NEVER = datetime(9999, 1, 1, tzinfo=UTC)


class ExecutorRows:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = ExecutionStore(engine)

    def task_id(self, name: str) -> str:
        with self.engine.connect() as conn:
            return str(conn.execute(select(scheduled_tasks.c.id).where(scheduled_tasks.c.name == name)).scalar_one())

    def queue(
        self,
        task: str,
        scheduled_for: datetime,
        *,
        attempt: int = 1,
        trigger: Trigger = Trigger.SCHEDULE,
        status: ExecutionStatus = ExecutionStatus.PENDING,
        created_at: datetime | None = None,
    ) -> str:
        execution = Execution(
            id=new_id("exec"),
            task_id=self.task_id(task),
            task_name=task,
            trigger=trigger,
            scheduled_for=scheduled_for,
            attempt=attempt,
            status=status,
            due_at=scheduled_for,
            created_at=created_at or scheduled_for,
        )
        return self.store.insert(execution).id

    def start(self, execution_id: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(task_executions)
                .where(task_executions.c.id == execution_id)
                # a lease that never expires: the replica under test must not recover it as a lost attempt
                .values(status="running", started_at=at, lease_owner="replica-test", lease_expires_at=NEVER)
            )

    def finish(self, execution_id: str, status: ExecutionStatus, at: datetime, *, duration: timedelta) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(task_executions)
                .where(task_executions.c.id == execution_id)
                .values(
                    status=status.value,
                    completed_at=at,
                    duration_ms=round(duration.total_seconds() * 1000),
                    error="boom" if status is ExecutionStatus.FAILED else None,
                    error_category="logic" if status is ExecutionStatus.FAILED else None,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )

    def run(
        self,
        task: str,
        scheduled_for: datetime,
        status: ExecutionStatus,
        *,
        late: timedelta = timedelta(0),
        duration: timedelta = timedelta(milliseconds=200),
        attempt: int = 1,
    ) -> str:
        """One whole execution: queued, started ``late`` after its instant, finished after ``duration``."""
        trigger = Trigger.RETRY if attempt > 1 else Trigger.SCHEDULE
        execution_id = self.queue(task, scheduled_for, attempt=attempt, trigger=trigger)
        self.start(execution_id, scheduled_for + late)
        self.finish(execution_id, status, scheduled_for + late + duration, duration=duration)
        return execution_id

    def dead_letter(self, execution_id: str, at: datetime) -> None:
        execution = self.store.get(execution_id)
        assert execution is not None
        with self.engine.begin() as conn:
            conn.execute(
                insert(dead_letters).values(
                    id=new_id("dlq"),
                    execution_id=execution_id,
                    task_id=execution.task_id,
                    task_name=execution.task_name,
                    scheduled_for=execution.scheduled_for,
                    attempts=execution.attempt,
                    error=execution.error,
                    error_category="logic",
                    created_at=at,
                )
            )
