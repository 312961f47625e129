"""RunTaskNow: one manual execution of a task, and waiting for its outcome.

With an executor the execution is queued and any replica's executor runs it while the call waits; without
one (the use cases alone, as in some tests and tools) the handler runs in the calling thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from schedule_grpc.domain import lifecycle
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.errors import DeadlineExceeded, NotFound
from schedule_grpc.domain.models import Execution, ExecutionStatus, Outcome, Task
from schedule_grpc.execution.runner import handler_context, run_handler
from schedule_grpc.handlers.base import Handler
from schedule_grpc.observability import logs
from schedule_grpc.security import secrets
from schedule_grpc.usecases.ports import ExecutionReads, ManualRecords, TaskQueue, TaskWrites, WaitingRunner

log = logging.getLogger(__name__)

# Without a caller deadline RunTaskNow waits this long beyond the task's timeout.
RUN_NOW_SLACK = timedelta(seconds=30)
# RunTaskNow answers this much before the caller's deadline, so the caller reads our message.
DEADLINE_MARGIN_S = 0.1
# RunTaskNow looks at its caller this often while it waits: a cancelled call frees its thread within a step.
RUN_NOW_STEP_S = 0.1


def run_in_thread(
    task: Task,
    handler: Handler,
    now: datetime,
    executions: ManualRecords,
    tasks: TaskWrites,
    clock: Clock,
    secrets_dir: str,
    started: Callable[[Execution], None],
) -> Execution:
    """Records a running manual execution (``started`` is told of it), runs the handler here, records the
    outcome scrubbed of the task's secrets and returns the execution as it ended."""
    execution = executions.insert(lifecycle.manual(task, now, running=True))
    started(execution)
    tasks.set_last_run(task.id, now)
    with logs.bind(task_id=task.id, task_name=task.name, execution_id=execution.id):
        try:
            context = handler_context(execution, task, secrets_dir)
        except secrets.SecretUnavailable as error:
            outcome = Outcome(ExecutionStatus.FAILED, clock.now(), error=str(error), error_category=error.category)
        else:
            outcome = run_handler(handler, context, clock)
        outcome = secrets.scrub_outcome(outcome, task.metadata, secrets_dir)
        finished = executions.finish(execution.id, outcome)
        log.info("execution finished", extra={"status": outcome.status.value, "trigger": "manual"})
    if finished is None:  # the task was deleted while it ran: report what happened anyway
        return dataclasses.replace(execution, status=outcome.status, error=outcome.error)
    return finished


def run_queued(
    task: Task,
    now: datetime,
    queue: TaskQueue,
    executions: ExecutionReads,
    executor: WaitingRunner,
    *,
    wait_s: float | None,
    is_active: Callable[[], bool],
    queued: Callable[[Execution], None],
) -> Execution:
    """Queues a manual execution (``queued`` is told of it) and waits for its outcome: until the task's timeout
    and some slack, or ``wait_s`` (the call's deadline) if sooner. DeadlineExceeded when it has not finished by
    then or as soon as ``is_active`` turns false; it keeps going and shows in the history."""
    execution = queue.enqueue(lifecycle.manual(task, now))
    queued(execution)
    with logs.bind(task_id=task.id, task_name=task.name, execution_id=execution.id):
        log.info("execution queued", extra={"trigger": "manual"})
    executor.wake()
    budget = (task.timeout + RUN_NOW_SLACK).total_seconds()
    if wait_s is not None:  # a call without a deadline reports an effectively infinite one
        budget = min(budget, wait_s - DEADLINE_MARGIN_S)
    deadline = time.monotonic() + budget
    while True:
        current = executions.get(execution.id)
        if current is None:  # deleted while it ran
            raise NotFound(f"task {task.name!r} not found", reason="TASK_NOT_FOUND")
        if current.status.finished:
            return current
        left = deadline - time.monotonic()
        if left <= 0 or not is_active():
            raise DeadlineExceeded(
                f"execution {execution.id} of task {task.name!r} is still {current.status.value} at the "
                "call's deadline; it keeps going and its outcome will show in the task's history",
                reason="EXECUTION_NOT_FINISHED",
            )
        # Woken when this replica records an execution; polls for one recorded by another replica.
        executor.wait_finished(execution.id, min(left, RUN_NOW_STEP_S))
