"""Use cases of the task API. Transport-free: the gRPC servicer calls these with the caller and converts.

Every method that acts for a caller takes it first: ``None`` when the service runs open (no credentials).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from schedule_grpc.domain import caller as callers
from schedule_grpc.domain import tokens, validation
from schedule_grpc.domain.audit import AuditAction
from schedule_grpc.domain.caller import Caller
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.defaults import default_tasks
from schedule_grpc.domain.errors import AlreadyExists, InvalidArgument, NotFound
from schedule_grpc.domain.history import HistoryFilter
from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import Execution, ExecutionStatus, OverlapPolicy, Page, Task
from schedule_grpc.domain.validation import NewTask
from schedule_grpc.handlers.base import Handler
from schedule_grpc.security import secrets
from schedule_grpc.usecases import runs, tenancy
from schedule_grpc.usecases.audit import AuditTrail
from schedule_grpc.usecases.history import History
from schedule_grpc.usecases.ports import ExecutionRecords, HandlerCatalog, TaskQueue, TaskRecords, WaitingRunner
from schedule_grpc.usecases.quota import Quota, insert_within

log = logging.getLogger(__name__)

DEFAULT_TASK_PAGE = 1000
DEFAULT_PREVIEW_COUNT = 5

Filter = HistoryFilter | None
Active = Callable[[], bool]


class Tasks:
    """Registers, changes, reads and runs tasks.

    Without ``queue`` and ``executor`` RunTaskNow runs the handler in the calling thread and disabling or
    deleting a task cancels nothing but its pending executions (the store does that).
    """

    def __init__(
        self,
        tasks: TaskRecords,
        executions: ExecutionRecords,
        handlers: HandlerCatalog,
        clock: Clock,
        *,
        queue: TaskQueue | None = None,
        executor: WaitingRunner | None = None,
        quota: Quota | None = None,
        limits: tenancy.Limits | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self._quota = quota
        self._tasks = tasks
        self._executions = executions
        self._history = History(tasks, executions)
        self._handlers = handlers
        self._clock = clock
        self._queue = queue
        self._executor = executor
        self._limits = limits or tenancy.Limits()
        self._reserved = tenancy.reserved_names()
        self._audit = audit

    # --- tasks -----------------------------------------------------------------------------

    def register(self, caller: Caller | None, new: NewTask) -> Task:
        """Validates and stores a new task owned by ``caller``. Nothing is written when any field is wrong."""
        validation.name(new.name)
        schedule = validation.schedule(new.schedule, new.timezone)
        handler = self._handler(new.handler)
        tenancy.check_registration(caller, new, handler, self._limits, self._reserved)
        metadata = validation.metadata(new.metadata)
        handler.validate(secrets.for_validation(metadata))
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
            owner=callers.owner_name(caller),
            history_retention=validation.history_retention(new.history_retention),
        )
        stored = tenancy.visible_task(caller, insert_within(self._quota, self._tasks, task))
        self._record(caller, AuditAction.REGISTERED, after=stored)
        return stored

    def find(self, name: str) -> Task | None:
        """The stored task named ``name``, as it is (for the service itself, not for callers)."""
        return self._tasks.get(name)

    def get(self, caller: Caller | None, name: str) -> Task:
        return tenancy.visible_task(caller, self._current(self._find(name)))

    def list(self, caller: Caller | None, *, page_size: int, page_token: str) -> Page[Task]:
        """Tasks in name order; others' tasks without their metadata for a ``service`` caller."""
        size = validation.limit(page_size, "page_size", default=DEFAULT_TASK_PAGE)
        after = tokens.decode(page_token, "tasks")
        items = self._tasks.list(limit=size + 1, after_name=after)
        more = len(items) > size
        items = [tenancy.visible_task(caller, self._current(t)) for t in items[:size]]
        return Page(items, tokens.encode("tasks", items[-1].name) if more else "")

    def enable(self, caller: Caller | None, name: str) -> Task:
        task = self._owned(caller, name)
        now = self._clock.now()
        next_run = validation.schedule(task.schedule, task.timezone).next_after(now)
        after = self._changed(name, self._tasks.set_enabled(name, enabled=True, next_run=next_run, now=now))
        self._record(caller, AuditAction.ENABLED, before=task, after=after)
        return tenancy.visible_task(caller, after)

    def disable(self, caller: Caller | None, name: str, *, cancel_running: bool = False) -> Task:
        """Stops the schedule and cancels the task's pending retries; a running execution finishes (and is
        not retried) or, with ``cancel_running``, is stopped at once."""
        task = self._owned(caller, name)
        now = self._clock.now()
        after = self._changed(name, self._tasks.set_enabled(name, enabled=False, next_run=None, now=now))
        self._cancel_executions(task, "the task was disabled", cancel_running=cancel_running)
        self._record(caller, AuditAction.DISABLED, before=task, after=after)
        return tenancy.visible_task(caller, after)

    def unregister(self, caller: Caller | None, name: str, *, cancel_running: bool = False) -> None:
        """Deletes the task; its executions stay readable by name. Its pending ones are cancelled; a running one
        finishes and is recorded (not retried) or, with ``cancel_running``, is stopped at once."""
        self._owned(caller, name)
        deleted = self._tasks.delete(name, now=self._clock.now())
        if deleted is None:
            raise _not_found(name)
        self._cancel_executions(deleted, "the task was unregistered", cancel_running=cancel_running)
        if self._quota is not None:
            self._quota.forget(deleted.owner)
        self._record(caller, AuditAction.UNREGISTERED, before=deleted)

    def _cancel_executions(self, task: Task, reason: str, *, cancel_running: bool) -> None:
        if self._queue is None:
            return
        cancelled = self._queue.cancel_task(task.id, now=self._clock.now(), reason=reason, running=cancel_running)
        for execution in cancelled:
            if execution.status is ExecutionStatus.RUNNING and self._executor is not None:
                self._executor.cancel(execution.id)  # here at once; other replicas at their next check
        if cancelled:
            log.info("executions cancelled", extra={"task": task.name, "count": len(cancelled), "reason": reason})

    def initialize_defaults(self, caller: Caller | None) -> Sequence[Task]:
        """Installs the seed's default tasks that are missing; a task of that name already there is kept
        exactly as it is (a user may have changed it). Idempotent; returns the default tasks as they stand."""
        result = []
        for new in default_tasks():
            existing = self._tasks.get(new.name)
            if existing is None:
                try:
                    existing = self.register(caller, new)
                except AlreadyExists:  # installed concurrently by another call: keep that one
                    existing = self._find(new.name)
            if existing.handler != new.handler:  # a task that took the name before names were reserved
                log.error(
                    "a task holds a default task's name with another handler; it is not the default",
                    extra={"task_name": existing.name, "handler": existing.handler, "owner": existing.owner},
                )
                continue
            result.append(tenancy.visible_task(caller, self._current(existing)))
        return result

    # --- executions ------------------------------------------------------------------------

    def run_now(
        self, caller: Caller | None, name: str, *, wait_s: float | None = None, is_active: Active | None = None
    ) -> Execution:
        """Queues a manual execution and waits for its outcome, for ``wait_s`` at most (the call's deadline).

        DeadlineExceeded when it has not finished by then, or as soon as ``is_active`` turns false (the caller
        cancelled or went away); it keeps going and shows in the history.
        Without an executor (the use cases alone) the handler runs in this thread.
        """
        task = self._owned(caller, name)
        handler = self._handler(task.handler, field="handler")
        now = self._clock.now()

        def record(execution: Execution) -> None:
            if self._audit is not None:
                self._audit.record(
                    caller, AuditAction.RUN_NOW, task_name=task.name, task_id=task.id, subject_id=execution.id
                )

        if self._queue is not None and self._executor is not None:
            active = is_active or (lambda: True)
            queue, executions, executor = self._queue, self._executions, self._executor
            return runs.run_queued(
                task, now, queue, executions, executor, wait_s=wait_s, is_active=active, queued=record
            )
        secrets_dir = self._limits.secrets_dir
        return runs.run_in_thread(task, handler, now, self._executions, self._tasks, self._clock, secrets_dir, record)

    def history(
        self,
        caller: Caller | None,
        name: str,
        *,
        limit: int,
        page_token: str,
        selector: Filter = None,
        full: bool = False,
    ) -> Page[Execution]:
        """A task's executions, newest first, filtered by status and time range (one round trip).

        Those of a deleted task too, by its name. ``full`` (tracebacks) is for the task's owner and admins.
        """
        return self._history.of_task(caller, name, limit=limit, page_token=page_token, selector=selector, full=full)

    def recent(
        self, caller: Caller | None, *, limit: int, page_token: str, selector: Filter = None, full: bool = False
    ) -> Page[Execution]:
        """Executions of all tasks, newest first, filtered by task, status and time range. ``full``: admins."""
        return self._history.recent(caller, limit=limit, page_token=page_token, selector=selector, full=full)

    # --- handlers and schedules (the same for every caller) --------------------------------

    def handlers(self) -> Sequence[Handler]:
        return self._handlers.all()

    def preview(self, expression: str, timezone: str, start: datetime | None, count: int) -> Sequence[datetime]:
        """The next ``count`` fire instants strictly after ``start`` (default now)."""
        schedule = validation.schedule(expression, timezone)
        n = validation.limit(count, "count", default=DEFAULT_PREVIEW_COUNT, maximum=validation.MAX_PREVIEW)
        try:
            instants = schedule.iter_after(start or self._clock.now())
            return [next(instants) for _ in range(n)]
        except (OverflowError, ValueError):  # past the year 9999, where datetime ends
            raise InvalidArgument(
                "start_time", f"the schedule has no {n} fire times between it and the end of year 9999"
            ) from None

    # --- helpers ---------------------------------------------------------------------------

    def _record(
        self, caller: Caller | None, action: AuditAction, *, before: Task | None = None, after: Task | None = None
    ) -> None:
        if self._audit is not None:
            self._audit.record(caller, action, before=before, after=after)

    def _find(self, name: str) -> Task:
        validation.name(name)
        task = self._tasks.get(name)
        if task is None:
            raise _not_found(name)
        return task

    def _owned(self, caller: Caller | None, name: str) -> Task:
        """The task, when ``caller`` may change it (its owner or an admin)."""
        task = self._find(name)
        callers.require_owner(caller, task.owner, f"task {name!r}")
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


def _not_found(name: str) -> NotFound:
    return NotFound(f"task {name!r} not found", reason="TASK_NOT_FOUND")
