"""Use cases of the task API. Transport-free: the gRPC servicer calls these and converts."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from schedule_grpc import caller, lifecycle, logs, tokens, validation
from schedule_grpc.clock import Clock
from schedule_grpc.defaults import default_tasks
from schedule_grpc.errors import AlreadyExists, DeadlineExceeded, InvalidArgument, NotFound
from schedule_grpc.handlers.base import Handler, HandlerContext
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.history import HistoryFilter, HistoryKey, decode_key, encode_key
from schedule_grpc.ids import new_id
from schedule_grpc.models import Execution, ExecutionStatus, OverlapPolicy, Page, Task
from schedule_grpc.runner import run_handler
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.tasks import TaskStore

if TYPE_CHECKING:
    from schedule_grpc.executor import Executor
    from schedule_grpc.store.queue import QueueStore
from schedule_grpc.validation import NewTask

log = logging.getLogger(__name__)

DEFAULT_TASK_PAGE = 1000
DEFAULT_HISTORY_LIMIT = 50
DEFAULT_RECENT_LIMIT = 100
DEFAULT_PREVIEW_COUNT = 5
# Without a caller deadline RunTaskNow waits this long beyond the task's timeout.
RUN_NOW_SLACK = timedelta(seconds=30)
# RunTaskNow answers this much before the caller's deadline, so the caller reads our message.
DEADLINE_MARGIN_S = 0.1


class TaskService:
    """Registers, changes, reads and runs tasks."""

    def __init__(
        self,
        tasks: TaskStore,
        executions: ExecutionStore,
        handlers: HandlerRegistry,
        clock: Clock,
        *,
        queue: QueueStore | None = None,
        executor: Executor | None = None,
    ) -> None:
        self._tasks = tasks
        self._executions = executions
        self._handlers = handlers
        self._clock = clock
        self._queue = queue
        self._executor = executor

    # --- tasks -----------------------------------------------------------------------------

    def register(self, new: NewTask) -> Task:
        """Validates and stores a new task. Nothing is written when any field is wrong."""
        validation.name(new.name)
        schedule = validation.schedule(new.schedule, new.timezone)
        handler = self._handler(new.handler)
        metadata = validation.metadata(new.metadata)
        handler.validate(metadata)
        now = self._clock.now()
        enabled = True if new.enabled is None else new.enabled
        task = Task(
            id=new_id("task"),
            name=new.name,
            schedule=new.schedule.strip(),
            handler=new.handler,
            enabled=enabled,
            metadata=metadata,
            timezone=schedule.timezone,
            created_at=now,
            updated_at=now,
            next_run=schedule.next_after(now) if enabled else None,
            retry_policy=validation.retry_policy(new.retry_policy),
            timeout=validation.timeout(new.timeout),
            overlap_policy=new.overlap_policy or OverlapPolicy.SKIP,
            catchup_window=validation.catchup_window(new.catchup_window),
            critical=new.critical,
            memory_limit_mb=validation.memory_limit_mb(new.memory_limit_mb),
            owner=caller.owner_name(),
            history_retention=validation.history_retention(new.history_retention),
        )
        return self._tasks.insert(task)

    def get(self, name: str) -> Task:
        return self._current(self._find(name))

    def list(self, *, page_size: int, page_token: str) -> Page[Task]:
        size = validation.limit(page_size, "page_size", default=DEFAULT_TASK_PAGE)
        after = tokens.decode(page_token, "tasks")
        items = self._tasks.list(limit=size + 1, after_name=after)
        more = len(items) > size
        items = [self._current(t) for t in items[:size]]
        return Page(items, tokens.encode("tasks", items[-1].name) if more else "")

    def enable(self, name: str) -> Task:
        task = self._owned(name)
        now = self._clock.now()
        next_run = validation.schedule(task.schedule, task.timezone).next_after(now)
        return self._changed(name, self._tasks.set_enabled(name, enabled=True, next_run=next_run, now=now))

    def disable(self, name: str, *, cancel_running: bool = False) -> Task:
        """Stops the schedule and cancels the task's pending retries; a running execution finishes (and is
        not retried) or, with ``cancel_running``, is stopped at once."""
        task = self._owned(name)
        now = self._clock.now()
        disabled = self._changed(name, self._tasks.set_enabled(name, enabled=False, next_run=None, now=now))
        self._cancel_executions(task, "the task was disabled", cancel_running=cancel_running)
        return disabled

    def unregister(self, name: str, *, cancel_running: bool = False) -> None:
        """Deletes the task with its history; a running execution finishes unrecorded or, with
        ``cancel_running``, is stopped at once."""
        task = self._owned(name)
        if cancel_running:
            self._cancel_executions(task, "the task was unregistered", cancel_running=True, settle=True)
        if not self._tasks.delete(name):
            raise _not_found(name)

    def _cancel_executions(self, task: Task, reason: str, *, cancel_running: bool, settle: bool = False) -> None:
        if self._queue is None:
            return
        cancelled = self._queue.cancel_task(task.id, now=self._clock.now(), reason=reason, running=cancel_running)
        elsewhere = False
        for execution in cancelled:
            if execution.status is ExecutionStatus.RUNNING and self._executor is not None:
                self._executor.cancel(execution.id)  # here at once; other replicas at their next check
                elsewhere = elsewhere or execution.lease_owner != self._executor.owner
        if cancelled:
            log.info("executions cancelled", extra={"task": task.name, "count": len(cancelled), "reason": reason})
        if settle and elsewhere and self._executor is not None:
            # The rows are about to be deleted: give the other replicas one check to see them cancelled.
            time.sleep(2 * self._executor.cancellation_check_s)

    def initialize_defaults(self) -> Sequence[Task]:
        """Installs the seed's default tasks that are missing; a task of that name already there is kept
        exactly as it is (a user may have changed it). Idempotent; returns the default tasks as they stand."""
        result = []
        for new in default_tasks():
            existing = self._tasks.get(new.name)
            if existing is None:
                try:
                    existing = self.register(new)
                except AlreadyExists:  # installed concurrently by another call: keep that one
                    existing = self._find(new.name)
            result.append(self._current(existing))
        return result

    # --- executions ------------------------------------------------------------------------

    def run_now(self, name: str, *, wait_s: float | None = None) -> Execution:
        """Queues a manual execution and waits for its outcome, for ``wait_s`` at most (the call's deadline).

        DeadlineExceeded when it has not finished by then; it keeps going and shows in the history.
        Without an executor (the use cases alone) the handler runs in this thread.
        """
        task = self._owned(name)
        handler = self._handler(task.handler, field="handler")
        now = self._clock.now()
        if self._queue is not None and self._executor is not None:
            return self._run_queued(task, now, wait_s)
        execution = self._executions.insert(lifecycle.manual(task, now, running=True))
        self._tasks.set_last_run(task.id, now)
        context = HandlerContext(
            execution_id=execution.id,
            task_id=task.id,
            task_name=task.name,
            scheduled_for=now,
            attempt=1,
            metadata=task.metadata,
            timeout=task.timeout,
        )
        with logs.bind(task_id=task.id, task_name=task.name, execution_id=execution.id):
            outcome = run_handler(handler, context, self._clock)
            finished = self._executions.finish(execution.id, outcome)
            log.info("execution finished", extra={"status": outcome.status.value, "trigger": "manual"})
        if finished is None:  # the task was deleted while it ran: report what happened anyway
            return dataclasses.replace(execution, status=outcome.status, error=outcome.error)
        return finished

    def _run_queued(self, task: Task, now: datetime, wait_s: float | None) -> Execution:
        assert self._queue is not None and self._executor is not None
        execution = self._queue.enqueue(lifecycle.manual(task, now))
        with logs.bind(task_id=task.id, task_name=task.name, execution_id=execution.id):
            log.info("execution queued", extra={"trigger": "manual"})
        self._executor.wake()
        budget = (task.timeout + RUN_NOW_SLACK).total_seconds()
        if wait_s is not None:  # a call without a deadline reports an effectively infinite one
            budget = min(budget, wait_s - DEADLINE_MARGIN_S)
        deadline = time.monotonic() + budget
        while True:
            current = self._executions.get(execution.id)
            if current is None:
                raise _not_found(task.name)  # deleted while it ran
            if current.status.finished:
                return current
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(
                    f"execution {execution.id} of task {task.name!r} is still {current.status.value} at the "
                    "call's deadline; it keeps going and its outcome will show in the task's history",
                    reason="EXECUTION_NOT_FINISHED",
                )
            # Woken when this replica records an execution; polls for one recorded by another replica.
            self._executor.wait_finished(execution.id, min(left, 0.2))

    def history(
        self, name: str, *, limit: int, page_token: str, selector: HistoryFilter | None = None
    ) -> Page[Execution]:
        """A task's executions, newest first, filtered by status and time range (one round trip)."""
        size = validation.limit(limit, "limit", default=DEFAULT_HISTORY_LIMIT)
        selector = (selector or HistoryFilter()).validate()
        validation.name(name)
        listing = f"history:{name}:{selector.fingerprint()}"
        after = decode_key(page_token, listing)
        items = self._executions.page(selector, limit=size + 1, task_name=name, after=after)
        if not items:
            self._find(name)  # an empty history, or no such task?
        return _page(items, size, listing)

    def recent(self, *, limit: int, page_token: str, selector: HistoryFilter | None = None) -> Page[Execution]:
        """Executions of all tasks, newest first, filtered by task, status and time range."""
        size = validation.limit(limit, "limit", default=DEFAULT_RECENT_LIMIT)
        selector = (selector or HistoryFilter()).validate()
        for task_name in selector.task_names:
            validation.name(task_name, "task_names")
        listing = f"recent:{selector.fingerprint()}"
        items = self._executions.page(selector, limit=size + 1, after=decode_key(page_token, listing))
        return _page(items, size, listing)

    # --- handlers and schedules ------------------------------------------------------------

    def handlers(self) -> Sequence[Handler]:
        return self._handlers.all()

    def preview(self, expression: str, timezone: str, start: datetime | None, count: int) -> Sequence[datetime]:
        """The next ``count`` fire instants strictly after ``start`` (default now)."""
        schedule = validation.schedule(expression, timezone)
        n = validation.limit(count, "count", default=DEFAULT_PREVIEW_COUNT, maximum=validation.MAX_PREVIEW)
        instants = schedule.iter_after(start or self._clock.now())
        return [next(instants) for _ in range(n)]

    # --- helpers ---------------------------------------------------------------------------

    def _find(self, name: str) -> Task:
        validation.name(name)
        task = self._tasks.get(name)
        if task is None:
            raise _not_found(name)
        return task

    def _owned(self, name: str) -> Task:
        """The task, when the current caller may change it (its owner or an admin)."""
        task = self._find(name)
        caller.require_owner(task.owner, f"task {name!r}")
        return task

    def _handler(self, name: str, field: str = "handler") -> Handler:
        if not name:
            raise InvalidArgument(field, "is required")
        handler = self._handlers.get(name)
        if handler is None:
            raise InvalidArgument(field, f"unknown handler {name!r}; ListHandlers lists the available ones")
        return handler

    def _changed(self, name: str, task: Task | None) -> Task:
        if task is None:
            raise _not_found(name)
        return self._current(task)

    def _current(self, task: Task) -> Task:
        """The task with a true next_run: the next fire instant after now, whatever is stored."""
        if not task.enabled:
            return dataclasses.replace(task, next_run=None)
        now = self._clock.now()
        if task.next_run is not None and task.next_run > now:
            return task
        schedule = validation.schedule(task.schedule, task.timezone)
        return dataclasses.replace(task, next_run=schedule.next_after(now - timedelta(microseconds=1)))


def _page(items: Sequence[Execution], size: int, listing: str) -> Page[Execution]:
    more = len(items) > size
    items = items[:size]
    last = items[-1] if items else None
    return Page(items, encode_key(listing, HistoryKey(last.created_at, last.id)) if more and last else "")


def _not_found(name: str) -> NotFound:
    return NotFound(f"task {name!r} not found", reason="TASK_NOT_FOUND")
