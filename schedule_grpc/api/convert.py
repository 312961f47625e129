"""Conversion between protobuf messages and domain types: the only place that knows both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from schedule.v1 import schedule_service_pb2 as pb

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import (
    DeadLetter,
    ErrorCategory,
    Execution,
    ExecutionStatus,
    OverlapPolicy,
    Task,
    Trigger,
)
from schedule_grpc.domain.validation import NewTask, RetryPolicyInput
from schedule_grpc.handlers.base import Handler
from schedule_grpc.security import secrets

_STATUS = {
    ExecutionStatus.PENDING: pb.EXECUTION_STATUS_PENDING,
    ExecutionStatus.RUNNING: pb.EXECUTION_STATUS_RUNNING,
    ExecutionStatus.SUCCESS: pb.EXECUTION_STATUS_SUCCESS,
    ExecutionStatus.FAILED: pb.EXECUTION_STATUS_FAILED,
    ExecutionStatus.CANCELLED: pb.EXECUTION_STATUS_CANCELLED,
    ExecutionStatus.MISSED: pb.EXECUTION_STATUS_MISSED,
    ExecutionStatus.SKIPPED: pb.EXECUTION_STATUS_SKIPPED,
}
_TRIGGER = {
    Trigger.SCHEDULE: pb.EXECUTION_TRIGGER_SCHEDULE,
    Trigger.MANUAL: pb.EXECUTION_TRIGGER_MANUAL,
    Trigger.RETRY: pb.EXECUTION_TRIGGER_RETRY,
}
_CATEGORY = {
    ErrorCategory.TIMEOUT: pb.ERROR_CATEGORY_TIMEOUT,
    ErrorCategory.NETWORK: pb.ERROR_CATEGORY_NETWORK,
    ErrorCategory.RESOURCE: pb.ERROR_CATEGORY_RESOURCE,
    ErrorCategory.LOGIC: pb.ERROR_CATEGORY_LOGIC,
    ErrorCategory.POLICY: pb.ERROR_CATEGORY_POLICY,
}
_OVERLAP = {
    OverlapPolicy.SKIP: pb.OVERLAP_POLICY_SKIP,
    OverlapPolicy.ALLOW: pb.OVERLAP_POLICY_ALLOW,
    OverlapPolicy.QUEUE_ONE: pb.OVERLAP_POLICY_QUEUE_ONE,
}
_OVERLAP_FROM_PB = {v: k for k, v in _OVERLAP.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    # Arithmetic instead of Timestamp.FromDatetime: history pages convert hundreds of these per call.
    delta = value - _EPOCH
    return timestamp_pb2.Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def optional_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    return None if value is None else timestamp(value)


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799


def from_timestamp(value: timestamp_pb2.Timestamp, field: str = "timestamp") -> datetime:
    """The instant, aware UTC; INVALID_ARGUMENT naming ``field`` outside Timestamp's valid range."""
    if not _MIN_SECONDS <= value.seconds <= _MAX_SECONDS or not 0 <= value.nanos < 1_000_000_000:
        raise InvalidArgument(field, "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
    return value.ToDatetime(tzinfo=UTC)


def duration(value: timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def _from_duration(message: Any, field: str, path: str) -> timedelta | None:
    if not message.HasField(field):
        return None
    value: duration_pb2.Duration = getattr(message, field)
    if value.seconds < 0 or value.nanos < 0:
        raise InvalidArgument(path, "must not be negative")
    result: timedelta = value.ToTimedelta()
    return result


def _integral(value: Any) -> Any:
    """JSON numbers travel in a Struct as doubles; give whole numbers back their integer form."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def task_to_pb(task: Task) -> pb.Task:
    policy = task.retry_policy
    return pb.Task(
        id=task.id,
        name=task.name,
        schedule=task.schedule,
        handler=task.handler,
        enabled=task.enabled,
        metadata=_struct(secrets.redact(task.metadata)),  # secrets are write-only
        last_run=optional_timestamp(task.last_run),
        next_run=optional_timestamp(task.next_run),
        created_at=timestamp(task.created_at),
        updated_at=timestamp(task.updated_at),
        timezone=task.timezone,
        retry_policy=pb.RetryPolicy(
            max_retries=policy.max_retries,
            initial_delay=duration(policy.initial_delay),
            multiplier=policy.multiplier,
            max_delay=duration(policy.max_delay),
            jitter=policy.jitter,
        ),
        timeout=duration(task.timeout),
        overlap_policy=_OVERLAP[task.overlap_policy],
        catchup_window=duration(task.catchup_window),
        critical=task.critical,
        memory_limit_mb=task.memory_limit_mb,
        owner=task.owner or "",
        history_retention=None if task.history_retention is None else duration(task.history_retention),
    )


def new_task_from_pb(request: pb.RegisterTaskRequest) -> NewTask:
    policy = request.retry_policy
    return NewTask(
        name=request.name,
        schedule=request.schedule,
        handler=request.handler,
        enabled=request.enabled if request.HasField("enabled") else None,
        metadata=_metadata_from_pb(request) if request.HasField("metadata") else {},
        timezone=request.timezone,
        retry_policy=RetryPolicyInput(
            max_retries=policy.max_retries if policy.HasField("max_retries") else None,
            initial_delay=_from_duration(policy, "initial_delay", "retry_policy.initial_delay"),
            multiplier=policy.multiplier if policy.HasField("multiplier") else None,
            max_delay=_from_duration(policy, "max_delay", "retry_policy.max_delay"),
            jitter=policy.jitter if policy.HasField("jitter") else None,
        ),
        timeout=_from_duration(request, "timeout", "timeout"),
        overlap_policy=_overlap_from_pb(request.overlap_policy),
        catchup_window=_from_duration(request, "catchup_window", "catchup_window"),
        critical=request.critical,
        memory_limit_mb=request.memory_limit_mb if request.HasField("memory_limit_mb") else None,
        history_retention=_from_duration(request, "history_retention", "history_retention"),
    )


def _metadata_from_pb(request: pb.RegisterTaskRequest) -> Any:
    try:
        return _integral(json_format.MessageToDict(request.metadata))
    except ValueError:  # NaN and infinities have no JSON form
        raise InvalidArgument("metadata", "numbers must be finite (no NaN or Infinity)") from None


def _overlap_from_pb(value: int) -> OverlapPolicy | None:
    if value == pb.OVERLAP_POLICY_UNSPECIFIED:
        return None
    try:
        return _OVERLAP_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument("overlap_policy", f"unknown value {value}") from None


def execution_to_pb(execution: Execution) -> pb.Execution:
    message = pb.Execution(
        id=execution.id,
        task_id=execution.task_id,
        task_name=execution.task_name,
        started_at=optional_timestamp(execution.started_at),
        completed_at=optional_timestamp(execution.completed_at),
        status=_STATUS[execution.status],
        error=execution.error or "",
        scheduled_for=timestamp(execution.scheduled_for),
        attempt=execution.attempt,
        trigger=_TRIGGER[execution.trigger],
        error_category=(
            _CATEGORY[execution.error_category] if execution.error_category else pb.ERROR_CATEGORY_UNSPECIFIED
        ),
        traceback=execution.traceback or "",
        created_at=timestamp(execution.created_at),
    )
    if execution.duration_ms is not None:
        message.duration_ms = max(execution.duration_ms, 0)
    if execution.status is ExecutionStatus.SUCCESS:
        _set_value(message.result, execution.result)
    return message


def _set_value(target: struct_pb2.Value, value: Any) -> None:
    """Writes a JSON value into a google.protobuf.Value in place."""
    if value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int | float):
        target.number_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, dict):
        target.struct_value.update(value)
    else:
        target.list_value.extend(value)


def handler_to_pb(handler: Handler) -> pb.HandlerInfo:
    return pb.HandlerInfo(name=handler.name, description=handler.description, category=handler.category)


def dead_letter_to_pb(letter: DeadLetter) -> pb.DeadLetter:
    return pb.DeadLetter(
        id=letter.id,
        execution_id=letter.execution_id,
        task_id=letter.task_id,
        task_name=letter.task_name,
        scheduled_for=timestamp(letter.scheduled_for),
        attempts=letter.attempts,
        error=letter.error or "",
        error_category=_CATEGORY[letter.error_category] if letter.error_category else pb.ERROR_CATEGORY_UNSPECIFIED,
        created_at=timestamp(letter.created_at),
    )
