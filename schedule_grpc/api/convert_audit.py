"""Conversion of the audit trail and of the execution view between protobuf and domain types."""

from __future__ import annotations

from typing import Any

from schedule.v1 import schedule_service_pb2 as pb

from schedule_grpc.api.convert import _struct, from_timestamp, timestamp
from schedule_grpc.domain.audit import AuditAction, AuditEntry, AuditFilter
from schedule_grpc.domain.errors import InvalidArgument

_ACTION = {
    AuditAction.REGISTERED: pb.AUDIT_ACTION_REGISTERED,
    AuditAction.UPDATED: pb.AUDIT_ACTION_UPDATED,
    AuditAction.ENABLED: pb.AUDIT_ACTION_ENABLED,
    AuditAction.DISABLED: pb.AUDIT_ACTION_DISABLED,
    AuditAction.UNREGISTERED: pb.AUDIT_ACTION_UNREGISTERED,
    AuditAction.RUN_NOW: pb.AUDIT_ACTION_RUN_NOW,
    AuditAction.DEAD_LETTER_REDRIVEN: pb.AUDIT_ACTION_DEAD_LETTER_REDRIVEN,
    AuditAction.DEAD_LETTER_DISCARDED: pb.AUDIT_ACTION_DEAD_LETTER_DISCARDED,
}
_ACTION_FROM_PB = {v: k for k, v in _ACTION.items()}
_VIEWS = (pb.EXECUTION_VIEW_UNSPECIFIED, pb.EXECUTION_VIEW_BASIC, pb.EXECUTION_VIEW_FULL)


def full_view(request: Any) -> bool:
    """Whether a listing request asks for EXECUTION_VIEW_FULL (tracebacks included)."""
    if request.view not in _VIEWS:
        raise InvalidArgument("view", f"unknown value {request.view}; expected basic or full")
    return bool(request.view == pb.EXECUTION_VIEW_FULL)


def audit_filter_from_pb(request: pb.ListAuditEntriesRequest) -> AuditFilter:
    try:
        actions = frozenset(_ACTION_FROM_PB[v] for v in request.actions)
    except KeyError as error:
        raise InvalidArgument("actions", f"unknown or unspecified action {error.args[0]}") from None
    return AuditFilter(
        task_name=request.task_name,
        actor=request.actor,
        actions=actions,
        start=from_timestamp(request.start_time) if request.HasField("start_time") else None,
        end=from_timestamp(request.end_time) if request.HasField("end_time") else None,
    )


def audit_entry_to_pb(entry: AuditEntry) -> pb.AuditEntry:
    message = pb.AuditEntry(
        id=entry.id,
        action=_ACTION[entry.action],
        task_name=entry.task_name,
        task_id=entry.task_id,
        actor=entry.actor or "",
        occurred_at=timestamp(entry.occurred_at),
        subject_id=entry.subject_id or "",
    )
    if entry.before is not None:
        message.before.CopyFrom(_struct(entry.before))
    if entry.after is not None:
        message.after.CopyFrom(_struct(entry.after))
    return message
