"""Conversion of history filters and execution events between protobuf and domain types."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from schedule.v1 import schedule_service_pb2 as pb

from schedule_grpc.api.convert import _CATEGORY, _STATUS, _TRIGGER, from_timestamp, optional_timestamp, timestamp
from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.events import EventFilter, EventKind, ExecutionEvent
from schedule_grpc.domain.history import HistoryFilter
from schedule_grpc.domain.models import ExecutionStatus

_STATUS_FROM_PB = {v: k for k, v in _STATUS.items()}
_KIND = {
    EventKind.QUEUED: pb.EXECUTION_EVENT_TYPE_QUEUED,
    EventKind.STARTED: pb.EXECUTION_EVENT_TYPE_STARTED,
    EventKind.SUCCEEDED: pb.EXECUTION_EVENT_TYPE_SUCCEEDED,
    EventKind.FAILED: pb.EXECUTION_EVENT_TYPE_FAILED,
    EventKind.RETRIED: pb.EXECUTION_EVENT_TYPE_RETRIED,
    EventKind.DEAD_LETTERED: pb.EXECUTION_EVENT_TYPE_DEAD_LETTERED,
    EventKind.MISSED: pb.EXECUTION_EVENT_TYPE_MISSED,
    EventKind.SKIPPED: pb.EXECUTION_EVENT_TYPE_SKIPPED,
    EventKind.CANCELLED: pb.EXECUTION_EVENT_TYPE_CANCELLED,
}
_KIND_FROM_PB = {v: k for k, v in _KIND.items()}


def _statuses(values: Iterable[int]) -> frozenset[ExecutionStatus]:
    try:
        return frozenset(_STATUS_FROM_PB[v] for v in values)  # type: ignore[index]
    except KeyError as error:
        raise InvalidArgument("statuses", f"unknown or unspecified status {error.args[0]}") from None


def _range(request: Any) -> dict[str, Any]:
    return {
        "start": from_timestamp(request.start_time, "start_time") if request.HasField("start_time") else None,
        "end": from_timestamp(request.end_time, "end_time") if request.HasField("end_time") else None,
    }


def history_filter_from_pb(request: pb.GetTaskHistoryRequest) -> HistoryFilter:
    return HistoryFilter(statuses=_statuses(request.statuses), **_range(request))


def recent_filter_from_pb(request: pb.GetRecentExecutionsRequest) -> HistoryFilter:
    return HistoryFilter(
        task_names=frozenset(request.task_names), statuses=_statuses(request.statuses), **_range(request)
    )


def event_filter_from_pb(request: pb.WatchExecutionsRequest) -> EventFilter:
    try:
        kinds = frozenset(_KIND_FROM_PB[v] for v in request.event_types)
    except KeyError as error:
        raise InvalidArgument("event_types", f"unknown or unspecified event type {error.args[0]}") from None
    return EventFilter(task_names=frozenset(request.task_names), kinds=kinds, statuses=_statuses(request.statuses))


def event_to_pb(event: ExecutionEvent) -> pb.ExecutionEvent:
    message = pb.ExecutionEvent(
        event_id=event.position.id,
        type=_KIND[event.kind],
        execution_id=event.execution_id,
        task_id=event.task_id,
        task_name=event.task_name,
        status=_STATUS[event.status],
        trigger=_TRIGGER[event.trigger] if event.trigger else pb.EXECUTION_TRIGGER_UNSPECIFIED,
        attempt=event.attempt,
        occurred_at=timestamp(event.occurred_at),
        scheduled_for=optional_timestamp(event.scheduled_for),
        started_at=optional_timestamp(event.started_at),
        error_category=_CATEGORY[event.error_category] if event.error_category else pb.ERROR_CATEGORY_UNSPECIFIED,
    )
    if event.duration_ms is not None:
        message.duration_ms = max(event.duration_ms, 0)
    return message
