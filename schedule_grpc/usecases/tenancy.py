"""What a caller may ask of the task API beyond owning its tasks: the handlers a ``service`` caller may
schedule, the names reserved for admins, the operator's caps, and what of others' tasks it sees.

Each rule is a function of the caller the API passed to the use case (None: the service runs open).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from schedule_grpc.domain import caller as callers
from schedule_grpc.domain.caller import Caller
from schedule_grpc.domain.defaults import default_tasks
from schedule_grpc.domain.errors import InvalidArgument, PermissionDenied
from schedule_grpc.domain.models import Execution, Task
from schedule_grpc.domain.validation import NewTask
from schedule_grpc.handlers.base import Handler
from schedule_grpc.handlers.maintenance import TASK_NAME as RETENTION_TASK_NAME

# Handlers a ``service`` caller may schedule; the built-in data handlers are an admin's (plugins opt in
# with ``open_to_services = True``).
SERVICE_HANDLERS = frozenset({"http", "grpc"})


@dataclass(frozen=True)
class Limits:
    """The operator's caps on what a caller may ask for, and where secret references are read."""

    max_memory_limit_mb: int = 4096
    max_timeout: timedelta = timedelta(hours=6)
    secrets_dir: str = ""


def reserved_names() -> frozenset[str]:
    """Task names only an admin may register: the 13 defaults and the retention task."""
    return frozenset({*(t.name for t in default_tasks()), RETENTION_TASK_NAME})


def open_to_services(handler: Handler) -> bool:
    """Whether a ``service`` caller may schedule ``handler``: http, grpc, and plugins declaring so."""
    return handler.name in SERVICE_HANDLERS or getattr(handler, "open_to_services", False) is True


def check_registration(
    caller: Caller | None, new: NewTask, handler: Handler, limits: Limits, reserved: frozenset[str]
) -> None:
    """PermissionDenied when a ``service`` caller takes a reserved name or a built-in data handler;
    InvalidArgument when anyone asks for more memory or time than the operator allows."""
    if callers.is_service(caller):
        if new.name in reserved:
            raise PermissionDenied(
                f"name: {new.name!r} is reserved for the service's default and maintenance tasks (admin only)",
                reason="RESERVED_NAME",
            )
        if not open_to_services(handler):
            raise PermissionDenied(
                f"handler: {handler.name!r} works on platform data; only an admin may schedule it "
                f"(service callers schedule {', '.join(sorted(SERVICE_HANDLERS))} and plugins open to services)",
                reason="ADMIN_ONLY_HANDLER",
            )
    if new.memory_limit_mb is not None and new.memory_limit_mb > limits.max_memory_limit_mb:
        raise InvalidArgument(
            "memory_limit_mb",
            f"{new.memory_limit_mb} MiB is above the operator's maximum of {limits.max_memory_limit_mb} MiB "
            "(SCHEDULE_MAX_MEMORY_LIMIT_MB)",
        )
    if new.timeout is not None and new.timeout > limits.max_timeout:
        raise InvalidArgument(
            "timeout",
            f"{new.timeout.total_seconds():g}s is above the operator's maximum of "
            f"{limits.max_timeout.total_seconds():g}s (SCHEDULE_MAX_TASK_TIMEOUT_S)",
        )


def visible_task(caller: Caller | None, task: Task) -> Task:
    """The task as ``caller`` may see it: metadata for its owner and admins only (its secrets are
    redacted where it is converted for an answer, api.convert)."""
    if callers.may_see_details(caller, task.owner):
        return task
    return dataclasses.replace(task, metadata={})


def visible_execution(caller: Caller | None, execution: Execution, owner: str | None) -> Execution:
    """Results, errors and tracebacks for the task's owner and admins; others see the outcome only."""
    if callers.may_see_details(caller, owner):
        return execution
    return dataclasses.replace(execution, result=None, error=None, traceback=None)


def allow_full_view(caller: Caller | None, owner: str | None, what: str, *, owned: bool) -> None:
    """PermissionDenied unless ``caller`` may read tracebacks of ``what``: its owner (when ``owned``) or an admin."""
    if caller is None or caller.is_admin or (owned and owner is not None and owner == caller.name):
        return
    raise PermissionDenied(
        f"the full view of {what} (tracebacks) is for the task's owner and admins", reason="FULL_VIEW_NOT_ALLOWED"
    )
