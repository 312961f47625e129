"""Reading executions: a task's history and the recent executions of all tasks, as a caller may see them."""

from __future__ import annotations

from collections.abc import Sequence

from schedule_grpc.domain import caller as callers
from schedule_grpc.domain import validation
from schedule_grpc.domain.caller import Caller
from schedule_grpc.domain.errors import NotFound
from schedule_grpc.domain.history import HistoryFilter, HistoryKey, decode_key, encode_key
from schedule_grpc.domain.models import Execution, Page
from schedule_grpc.usecases import tenancy
from schedule_grpc.usecases.ports import ExecutionReads, TaskLookup

DEFAULT_HISTORY_LIMIT = 50
DEFAULT_RECENT_LIMIT = 100


class History:
    """Pages of executions, newest first, filtered in one round trip; details for whom may see them."""

    def __init__(self, tasks: TaskLookup, executions: ExecutionReads) -> None:
        self._tasks = tasks
        self._executions = executions

    def of_task(
        self,
        caller: Caller | None,
        name: str,
        *,
        limit: int,
        page_token: str,
        selector: HistoryFilter | None = None,
        full: bool = False,
    ) -> Page[Execution]:
        """A task's executions, filtered by status and time range; those of a deleted task too, by its name.
        ``full`` (tracebacks) is for the task's owner and admins."""
        size = validation.limit(limit, "limit", default=DEFAULT_HISTORY_LIMIT)
        selector = (selector or HistoryFilter()).validate()
        validation.name(name)
        if full:
            task = self._tasks.get(name)
            owner = task.owner if task else None
            tenancy.allow_full_view(caller, owner, f"the history of task {name!r}", owned=task is not None)
        listing = f"history:{name}:{selector.fingerprint()}"
        after = decode_key(page_token, listing)
        items = self._executions.page(selector, limit=size + 1, task_name=name, after=after)
        if not items or callers.is_service(caller):
            task = self._tasks.get(name)  # NOT_FOUND for no such task; whose history a service reads
            if task is None:
                raise NotFound(f"task {name!r} not found", reason="TASK_NOT_FOUND")
            items = [tenancy.visible_execution(caller, e, task.owner) for e in items]
        return _page(items, size, listing)

    def recent(
        self,
        caller: Caller | None,
        *,
        limit: int,
        page_token: str,
        selector: HistoryFilter | None = None,
        full: bool = False,
    ) -> Page[Execution]:
        """Executions of all tasks, filtered by task, status and time range. ``full``: admins."""
        size = validation.limit(limit, "limit", default=DEFAULT_RECENT_LIMIT)
        if full:
            tenancy.allow_full_view(caller, None, "the executions of every task", owned=False)
        selector = (selector or HistoryFilter()).validate()
        for task_name in selector.task_names:
            validation.name(task_name, "task_names")
        listing = f"recent:{selector.fingerprint()}"
        items = self._executions.page(selector, limit=size + 1, after=decode_key(page_token, listing))
        page = _page(items, size, listing)
        if not callers.is_service(caller):  # admins (and everyone while open) see every detail
            return page
        owners: dict[str, str | None] = {}
        for execution in page.items:
            if execution.task_name not in owners:
                task = self._tasks.get(execution.task_name)
                owners[execution.task_name] = task.owner if task else None
        return Page([tenancy.visible_execution(caller, e, owners[e.task_name]) for e in page.items], page.next_token)


def _page(items: Sequence[Execution], size: int, listing: str) -> Page[Execution]:
    more = len(items) > size
    items = items[:size]
    last = items[-1] if items else None
    return Page(items, encode_key(listing, HistoryKey(last.created_at, last.id)) if more and last else "")
