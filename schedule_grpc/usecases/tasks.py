"""Use cases of the task API. Transport-free: the gRPC servicer calls these and converts."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from schedule_grpc.domain import caller, tokens, validation
from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.defaults import default_tasks
from schedule_grpc.domain.errors import AlreadyExists, DeadlineExceeded, InvalidArgument, NotFound, PermissionDenied
from schedule_grpc.domain.history import HistoryFilter, HistoryKey, decode_key, encode_key
from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import Execution, ExecutionStatus, Outcome, OverlapPolicy, Page, Task
from schedule_grpc.execution import lifecycle
from schedule_grpc.execution.runner import handler_context, run_handler
from schedule_grpc.handlers.base import Handler
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.observability import logs
from schedule_grpc.security import secrets
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.tasks import Quota, TaskStore
from schedule_grpc.usecases import tenancy
from schedule_grpc.usecases.audit import AuditAction, AuditTrail

if TYPE_CHECKING:
    from schedule_grpc.execution.executor import Executor
    from schedule_grpc.store.queue import QueueStore
from schedule_grpc.domain.validation import NewTask

log = logging.getLogger(__name__)

DEFAULT_TASK_PAGE = 1000
DEFAULT_HISTORY_LIMIT = 50
DEFAULT_RECENT_LIMIT = 100
DEFAULT_PREVIEW_COUNT = 5
# Without a caller deadline RunTaskNow waits this long beyond the task's timeout.
RUN_NOW_SLACK = timedelta(seconds=30)
# RunTaskNow answers this much before the caller's deadline, so the caller reads our message.
DEADLINE_MARGIN_S = 0.1
# RunTaskNow looks at its caller this often while it waits: a cancelled call frees its thread within a step.
RUN_NOW_STEP_S = 0.1


class Tasks:
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
        quota: Quota | None = None,
        limits: tenancy.Limits | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self._quota = quota
        self._tasks = tasks
        self._executions = executions
        self._handlers = handlers
        self._clock = clock
        self._queue = queue
        self._executor = executor
        self._limits = limits or tenancy.Limits()
        self._reserved = tenancy.reserved_names()
        self._audit = audit

    # --- tasks -----------------------------------------------------------------------------

    def register(self, new: NewTask) -> Task:
        """Validates and stores a new task. Nothing is written when any field is wrong."""
        validation.name(new.name)
        schedule = validation.schedule(new.schedule, new.timezone)
        handler = self._handler(new.handler)
        tenancy.check_registration(new, handler, self._limits, self._reserved)
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
            owner=caller.owner_name(),
            history_retention=validation.history_retention(new.history_retention),
        )
        stored = tenancy.visible_task(self._tasks.insert(task, self._quota))
        self._record(AuditAction.REGISTERED, after=stored)
        return stored

    def find(self, name: str) -> Task | None:
        """The stored task named ``name``, as it is (for the service itself, not for callers)."""
        return self._tasks.get(name)

    def get(self, name: str) -> Task:
        return tenancy.visible_task(self._current(self._find(name)))

    def list(self, *, page_size: int, page_token: str) -> Page[Task]:
        size = validation.limit(page_size, "page_size", default=DEFAULT_TASK_PAGE)
        after = tokens.decode(page_token, "tasks")
        items = self._tasks.list(limit=size + 1, after_name=after)
        more = len(items) > size
        items = [tenancy.visible_task(self._current(t)) for t in items[:size]]
        return Page(items, tokens.encode("tasks", items[-1].name) if more else "")

    def enable(self, name: str) -> Task:
        task = self._owned(name)
        now = self._clock.now()
        next_run = validation.schedule(task.schedule, task.timezone).next_after(now)
        after = self._changed(name, self._tasks.set_enabled(name, enabled=True, next_run=next_run, now=now))
        self._record(AuditAction.ENABLED, before=task, after=after)
        return tenancy.visible_task(after)

    def disable(self, name: str, *, cancel_running: bool = False) -> Task:
        """Stops the schedule and cancels the task's pending retries; a running execution finishes (and is
        not retried) or, with ``cancel_running``, is stopped at once."""
        task = self._owned(name)
        now = self._clock.now()
        after = self._changed(name, self._tasks.set_enabled(name, enabled=False, next_run=None, now=now))
        self._cancel_executions(task, "the task was disabled", cancel_running=cancel_running)
        self._record(AuditAction.DISABLED, before=task, after=after)
        return tenancy.visible_task(after)

    def unregister(self, name: str, *, cancel_running: bool = False) -> None:
        """Deletes the task; its executions stay readable by name. Its pending ones are cancelled; a running one
        finishes and is recorded (not retried) or, with ``cancel_running``, is stopped at once."""
        self._owned(name)
        deleted = self._tasks.delete(name, now=self._clock.now())
        if deleted is None:
            raise _not_found(name)
        self._cancel_executions(deleted, "the task was unregistered", cancel_running=cancel_running)
        if self._quota is not None:
            self._quota.forget(deleted.owner)
        self._record(AuditAction.UNREGISTERED, before=deleted)

    def _cancel_executions(self, task: Task, reason: str, *, cancel_running: bool) -> None:
        if self._queue is None:
            return
        cancelled = self._queue.cancel_task(task.id, now=self._clock.now(), reason=reason, running=cancel_running)
        for execution in cancelled:
            if execution.status is ExecutionStatus.RUNNING and self._executor is not None:
                self._executor.cancel(execution.id)  # here at once; other replicas at their next check
        if cancelled:
            log.info("executions cancelled", extra={"task": task.name, "count": len(cancelled), "reason": reason})

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
            if existing.handler != new.handler:  # a task that took the name before names were reserved
                log.error(
                    "a task holds a default task's name with another handler; it is not the default",
                    extra={"task_name": existing.name, "handler": existing.handler, "owner": existing.owner},
                )
                continue
            result.append(tenancy.visible_task(self._current(existing)))
        return result

    # --- executions ------------------------------------------------------------------------

    def run_now(
        self, name: str, *, wait_s: float | None = None, is_active: Callable[[], bool] | None = None
    ) -> Execution:
        """Queues a manual execution and waits for its outcome, for ``wait_s`` at most (the call's deadline).

        DeadlineExceeded when it has not finished by then, or as soon as ``is_active`` turns false (the caller
        cancelled or went away); it keeps going and shows in the history.
        Without an executor (the use cases alone) the handler runs in this thread.
        """
        task = self._owned(name)
        handler = self._handler(task.handler, field="handler")
        now = self._clock.now()
        if self._queue is not None and self._executor is not None:
            return self._run_queued(task, now, wait_s, is_active or (lambda: True))
        execution = self._executions.insert(lifecycle.manual(task, now, running=True))
        self._record_run(task, execution)
        self._tasks.set_last_run(task.id, now)
        with logs.bind(task_id=task.id, task_name=task.name, execution_id=execution.id):
            try:
                context = handler_context(execution, task, self._limits.secrets_dir)
            except secrets.SecretUnavailable as error:
                outcome = Outcome(
                    ExecutionStatus.FAILED, self._clock.now(), error=str(error), error_category=error.category
                )
            else:
                outcome = run_handler(handler, context, self._clock)
            outcome = secrets.scrub_outcome(outcome, task.metadata, self._limits.secrets_dir)
            finished = self._executions.finish(execution.id, outcome)
            log.info("execution finished", extra={"status": outcome.status.value, "trigger": "manual"})
        if finished is None:  # the task was deleted while it ran: report what happened anyway
            return dataclasses.replace(execution, status=outcome.status, error=outcome.error)
        return finished

    def _run_queued(self, task: Task, now: datetime, wait_s: float | None, is_active: Callable[[], bool]) -> Execution:
        assert self._queue is not None and self._executor is not None
        execution = self._queue.enqueue(lifecycle.manual(task, now))
        self._record_run(task, execution)
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
            if left <= 0 or not is_active():
                raise DeadlineExceeded(
                    f"execution {execution.id} of task {task.name!r} is still {current.status.value} at the "
                    "call's deadline; it keeps going and its outcome will show in the task's history",
                    reason="EXECUTION_NOT_FINISHED",
                )
            # Woken when this replica records an execution; polls for one recorded by another replica.
            self._executor.wait_finished(execution.id, min(left, RUN_NOW_STEP_S))

    def history(
        self, name: str, *, limit: int, page_token: str, selector: HistoryFilter | None = None, full: bool = False
    ) -> Page[Execution]:
        """A task's executions, newest first, filtered by status and time range (one round trip).

        Those of a deleted task too, by its name. ``full`` (tracebacks) is for the task's owner and admins.
        """
        size = validation.limit(limit, "limit", default=DEFAULT_HISTORY_LIMIT)
        selector = (selector or HistoryFilter()).validate()
        validation.name(name)
        if full:
            task = self._tasks.get(name)
            _allow_full_view(task.owner if task else None, f"the history of task {name!r}", owned=task is not None)
        listing = f"history:{name}:{selector.fingerprint()}"
        after = decode_key(page_token, listing)
        items = self._executions.page(selector, limit=size + 1, task_name=name, after=after)
        if not items or caller.is_service():
            owner = self._find(name).owner  # NOT_FOUND for no such task; whose history a service reads
            items = [tenancy.visible_execution(e, owner) for e in items]
        return _page(items, size, listing)

    def recent(
        self, *, limit: int, page_token: str, selector: HistoryFilter | None = None, full: bool = False
    ) -> Page[Execution]:
        """Executions of all tasks, newest first, filtered by task, status and time range. ``full``: admins."""
        size = validation.limit(limit, "limit", default=DEFAULT_RECENT_LIMIT)
        if full:
            _allow_full_view(None, "the executions of every task", owned=False)
        selector = (selector or HistoryFilter()).validate()
        for task_name in selector.task_names:
            validation.name(task_name, "task_names")
        listing = f"recent:{selector.fingerprint()}"
        items = self._executions.page(selector, limit=size + 1, after=decode_key(page_token, listing))
        page = _page(items, size, listing)
        if not caller.is_service():  # admins (and everyone while open) see every detail
            return page
        owners: dict[str, str | None] = {}
        for execution in page.items:
            if execution.task_name not in owners:
                task = self._tasks.get(execution.task_name)
                owners[execution.task_name] = task.owner if task else None
        return Page([tenancy.visible_execution(e, owners[e.task_name]) for e in page.items], page.next_token)

    # --- handlers and schedules ------------------------------------------------------------

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

    def _record(self, action: AuditAction, *, before: Task | None = None, after: Task | None = None) -> None:
        if self._audit is not None:
            self._audit.record(action, before=before, after=after)

    def _record_run(self, task: Task, execution: Execution) -> None:
        if self._audit is not None:
            self._audit.record(AuditAction.RUN_NOW, task_name=task.name, task_id=task.id, subject_id=execution.id)

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


def _allow_full_view(owner: str | None, what: str, *, owned: bool) -> None:
    """PermissionDenied unless the caller may read tracebacks of ``what``: its owner (when ``owned``) or an admin."""
    current = caller.current()
    if current is None or current.is_admin or (owned and owner is not None and owner == current.name):
        return
    raise PermissionDenied(
        f"the full view of {what} (tracebacks) is for the task's owner and admins", reason="FULL_VIEW_NOT_ALLOWED"
    )
