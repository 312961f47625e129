"""Domain errors. They carry no transport codes: api/status.py maps them, in one table."""

from __future__ import annotations

from schedule_grpc.domain.models import ErrorCategory

# What an error may echo back: gRPC clients refuse trailers over 8 KB (status message + details), so a
# caller's 5,000-character value must not come back whole.
MAX_MESSAGE_CHARS = 1024
MAX_DESCRIPTION_CHARS = 300


def excerpt(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class ScheduleError(Exception):
    """Base of every error a caller is meant to see.

    ``reason`` is a stable UPPER_SNAKE_CASE identifier (google.rpc.ErrorInfo.reason).
    """

    reason = "SCHEDULE_ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        message = excerpt(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


# ErrorInfo.reason of a bad request field, by the field's first path segment, so a program can tell a
# bad schedule from a bad time zone without reading the message. A missing required field is
# MISSING_REQUIRED_FIELD whatever the (top-level) field. Documented in the proto and the README; add a row, never
# change one (clients match on them).
FIELD_REASONS: dict[str, str] = {
    "name": "INVALID_TASK_NAME",
    "task_name": "INVALID_TASK_NAME",
    "task_names": "INVALID_TASK_NAME",
    "schedule": "INVALID_SCHEDULE",
    "timezone": "INVALID_TIME_ZONE",
    "handler": "UNKNOWN_HANDLER",
    "metadata": "INVALID_METADATA",
    "retry_policy": "INVALID_RETRY_POLICY",
    "timeout": "INVALID_DURATION",
    "catchup_window": "INVALID_DURATION",
    "history_retention": "INVALID_DURATION",
    "memory_limit_mb": "INVALID_MEMORY_LIMIT",
    "overlap_policy": "INVALID_ENUM_VALUE",
    "statuses": "INVALID_ENUM_VALUE",
    "event_types": "INVALID_ENUM_VALUE",
    "view": "INVALID_ENUM_VALUE",
    "actions": "INVALID_ENUM_VALUE",
    "limit": "INVALID_PAGE_SIZE",
    "page_size": "INVALID_PAGE_SIZE",
    "count": "INVALID_PAGE_SIZE",
    "page_token": "INVALID_PAGE_TOKEN",
    "cursor": "INVALID_CURSOR",
    "start_time": "INVALID_TIME_RANGE",
    "end_time": "INVALID_TIME_RANGE",
    "id": "INVALID_ID",
    "execution_id": "INVALID_ID",
    "actor": "INVALID_ACTOR",
}
MISSING_REQUIRED_FIELD = "MISSING_REQUIRED_FIELD"
INVALID_FIELD_VALUE = "INVALID_FIELD_VALUE"  # a field with no row above


def reason_for(field: str, description: str) -> str:
    """The ErrorInfo.reason of a bad ``field`` (dotted path), per FIELD_REASONS."""
    if "." not in field and description.startswith("is required"):
        return MISSING_REQUIRED_FIELD
    return FIELD_REASONS.get(field.split(".", 1)[0].split("[", 1)[0], INVALID_FIELD_VALUE)


class InvalidArgument(ScheduleError):
    """A request field is wrong; ``field`` names it (dotted path for nested fields).

    The reason is specific to the kind of field (see FIELD_REASONS) unless given.
    """

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str, *, reason: str | None = None) -> None:
        field, description = excerpt(field, 200), excerpt(description, MAX_DESCRIPTION_CHARS)
        super().__init__(f"{field}: {description}", reason=reason or reason_for(field, description))
        self.field = field
        self.description = description


class NotFound(ScheduleError):
    """The named resource does not exist."""

    reason = "NOT_FOUND"


class AlreadyExists(ScheduleError):
    """A resource of that name exists already."""

    reason = "ALREADY_EXISTS"


class FailedPrecondition(ScheduleError):
    """The resource is not in a state that allows the operation."""

    reason = "FAILED_PRECONDITION"


class Unavailable(ScheduleError):
    """A dependency (the database) cannot be reached; the call may be retried."""

    reason = "UNAVAILABLE"


class Unimplemented(ScheduleError):
    """The operation is not available in this version."""

    reason = "UNIMPLEMENTED"


class Unauthenticated(ScheduleError):
    """No valid credential came with the call."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(ScheduleError):
    """The caller's role does not allow the operation."""

    reason = "PERMISSION_DENIED"


class ResourceExhausted(ScheduleError):
    """The caller is over a limit; ``retry_after_s`` says when to try again."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(ScheduleError):
    """The operation did not finish within the caller's deadline."""

    reason = "DEADLINE_EXCEEDED"


class HandlerFailed(Exception):
    """A handler's failure with its category (network, logic, ...); recorded on the execution, never an RPC
    error. Here rather than in handlers/ because security (an unreadable secret) raises it too."""

    def __init__(self, message: str, category: ErrorCategory) -> None:
        super().__init__(message)
        self.category = category
