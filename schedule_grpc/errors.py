"""Domain errors. They carry no transport codes: api/status.py maps them, in one table."""

from __future__ import annotations

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


class InvalidArgument(ScheduleError):
    """A request field is wrong; ``field`` names it (dotted path for nested fields)."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str) -> None:
        field, description = excerpt(field, 200), excerpt(description, MAX_DESCRIPTION_CHARS)
        super().__init__(f"{field}: {description}")
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
