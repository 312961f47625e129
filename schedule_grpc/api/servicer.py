"""The schedule.v1.ScheduleService servicer: parse, call one use case as the caller, convert.

The caller is the one ``api.guard.CallGuard`` authenticated and set for the length of the call
(``domain.caller.current``); each method passes it to the use case explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.api import convert, convert_audit, convert_history
from schedule_grpc.api.capacity import LongCalls
from schedule_grpc.api.guard import peer_address
from schedule_grpc.domain.caller import current as caller
from schedule_grpc.domain.errors import Unavailable, Unimplemented
from schedule_grpc.domain.models import Execution, ExecutionStatus
from schedule_grpc.observability.watch import Watches
from schedule_grpc.usecases.audit import AuditTrail
from schedule_grpc.usecases.executions import Executions
from schedule_grpc.usecases.tasks import Tasks


class ScheduleServicer(pb_grpc.ScheduleServiceServicer):
    """Domain errors raised here are mapped to statuses by api.status.ErrorInterceptor."""

    def __init__(
        self,
        tasks: Tasks,
        queue: Executions | None = None,
        watch: Watches | None = None,
        long_calls: LongCalls | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self._tasks = tasks
        self._queue = queue
        self._watch = watch
        self._long_calls = long_calls or LongCalls(per_replica=16, per_caller=4)
        self._audit = audit

    def _operations(self) -> Executions:
        if self._queue is None:
            raise Unimplemented("this server runs no executor", reason="EXECUTOR_UNAVAILABLE")
        return self._queue

    def RegisterTask(self, request: pb.RegisterTaskRequest, context: grpc.ServicerContext) -> pb.RegisterTaskResponse:
        task = self._tasks.register(caller(), convert.new_task_from_pb(request))
        return pb.RegisterTaskResponse(
            task=convert.task_to_pb(task), message=f"Task {task.name} registered successfully"
        )

    def UnregisterTask(
        self, request: pb.UnregisterTaskRequest, context: grpc.ServicerContext
    ) -> pb.UnregisterTaskResponse:
        self._tasks.unregister(caller(), request.name, cancel_running=request.cancel_running)
        return pb.UnregisterTaskResponse(message=f"Task {request.name} unregistered")

    def EnableTask(self, request: pb.EnableTaskRequest, context: grpc.ServicerContext) -> pb.EnableTaskResponse:
        task = self._tasks.enable(caller(), request.name)
        return pb.EnableTaskResponse(message=f"Task {task.name} enabled", task=convert.task_to_pb(task))

    def DisableTask(self, request: pb.DisableTaskRequest, context: grpc.ServicerContext) -> pb.DisableTaskResponse:
        task = self._tasks.disable(caller(), request.name, cancel_running=request.cancel_running)
        return pb.DisableTaskResponse(message=f"Task {task.name} disabled", task=convert.task_to_pb(task))

    def GetTask(self, request: pb.GetTaskRequest, context: grpc.ServicerContext) -> pb.GetTaskResponse:
        return pb.GetTaskResponse(task=convert.task_to_pb(self._tasks.get(caller(), request.name)))

    def ListTasks(self, request: pb.ListTasksRequest, context: grpc.ServicerContext) -> pb.ListTasksResponse:
        page = self._tasks.list(caller(), page_size=request.page_size, page_token=request.page_token)
        return pb.ListTasksResponse(tasks=[convert.task_to_pb(t) for t in page.items], next_page_token=page.next_token)

    def RunTaskNow(self, request: pb.RunTaskNowRequest, context: grpc.ServicerContext) -> pb.RunTaskNowResponse:
        with self._long_calls.hold(_peer(context)):
            # is_active: a client that cancels or goes away frees this thread within one wait step
            execution = self._tasks.run_now(
                caller(), request.name, wait_s=context.time_remaining(), is_active=context.is_active
            )
        success = execution.status is ExecutionStatus.SUCCESS
        message = (
            f"Task {request.name} executed successfully"
            if success
            else f"Task {request.name} failed: {execution.error or execution.status.value}"
        )
        return pb.RunTaskNowResponse(success=success, message=message, execution=convert.execution_to_pb(execution))

    def GetTaskHistory(
        self, request: pb.GetTaskHistoryRequest, context: grpc.ServicerContext
    ) -> pb.GetTaskHistoryResponse:
        full = convert_audit.full_view(request)
        page = self._tasks.history(
            caller(),
            request.name,
            limit=request.limit,
            page_token=request.page_token,
            selector=convert_history.history_filter_from_pb(request),
            full=full,
        )
        return pb.GetTaskHistoryResponse(
            history=[_in_view(e, full) for e in page.items], next_page_token=page.next_token
        )

    def GetRecentExecutions(
        self, request: pb.GetRecentExecutionsRequest, context: grpc.ServicerContext
    ) -> pb.GetRecentExecutionsResponse:
        full = convert_audit.full_view(request)
        page = self._tasks.recent(
            caller(),
            limit=request.limit,
            page_token=request.page_token,
            selector=convert_history.recent_filter_from_pb(request),
            full=full,
        )
        return pb.GetRecentExecutionsResponse(
            executions=[_in_view(e, full) for e in page.items], next_page_token=page.next_token
        )

    def ListHandlers(self, request: pb.ListHandlersRequest, context: grpc.ServicerContext) -> pb.ListHandlersResponse:
        handlers = self._tasks.handlers()
        return pb.ListHandlersResponse(
            handlers=[h.name for h in handlers], handler_details=[convert.handler_to_pb(h) for h in handlers]
        )

    def InitializeDefaultTasks(
        self, request: pb.InitializeDefaultTasksRequest, context: grpc.ServicerContext
    ) -> pb.InitializeDefaultTasksResponse:
        tasks = self._tasks.initialize_defaults(caller())
        return pb.InitializeDefaultTasksResponse(
            message="Default tasks initialized", tasks=[convert.task_to_pb(t) for t in tasks]
        )

    def PreviewSchedule(
        self, request: pb.PreviewScheduleRequest, context: grpc.ServicerContext
    ) -> pb.PreviewScheduleResponse:
        start = convert.from_timestamp(request.start_time, "start_time") if request.HasField("start_time") else None
        instants = self._tasks.preview(request.schedule, request.timezone, start, request.count)
        return pb.PreviewScheduleResponse(next_run_times=[convert.timestamp(t) for t in instants])

    def CancelExecution(
        self, request: pb.CancelExecutionRequest, context: grpc.ServicerContext
    ) -> pb.CancelExecutionResponse:
        execution = self._operations().cancel(caller(), request.execution_id)
        return pb.CancelExecutionResponse(
            execution=convert.execution_to_pb(execution), message=f"Execution {execution.id} cancelled"
        )

    def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        page = self._operations().dead_letters(
            caller(), task_name=request.task_name, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListDeadLettersResponse(
            dead_letters=[convert.dead_letter_to_pb(d) for d in page.items], next_page_token=page.next_token
        )

    def RedriveDeadLetter(
        self, request: pb.RedriveDeadLetterRequest, context: grpc.ServicerContext
    ) -> pb.RedriveDeadLetterResponse:
        execution = self._operations().redrive(caller(), request.id)
        return pb.RedriveDeadLetterResponse(
            execution=convert.execution_to_pb(execution),
            message=f"Dead letter {request.id} redriven as execution {execution.id}",
        )

    def DiscardDeadLetter(
        self, request: pb.DiscardDeadLetterRequest, context: grpc.ServicerContext
    ) -> pb.DiscardDeadLetterResponse:
        self._operations().discard(caller(), request.id)
        return pb.DiscardDeadLetterResponse(message=f"Dead letter {request.id} discarded")

    def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListAuditEntriesResponse:
        if self._audit is None:
            raise Unimplemented("this server keeps no audit trail", reason="AUDIT_UNAVAILABLE")
        page = self._audit.list(
            convert_audit.audit_filter_from_pb(request), page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListAuditEntriesResponse(
            entries=[convert_audit.audit_entry_to_pb(e) for e in page.items], next_page_token=page.next_token
        )

    def WatchExecutions(
        self, request: pb.WatchExecutionsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchExecutionsResponse]:
        if self._watch is None:
            raise Unimplemented("WatchExecutions is not served by this server", reason="WATCH_UNAVAILABLE")
        watch = self._watch
        with self._long_calls.hold(_peer(context)):
            context.add_callback(watch.wake)  # a cancelled stream gives its thread back at once
            for item in watch.watch(
                caller(), convert_history.event_filter_from_pb(request), request.cursor, context.is_active
            ):
                event = convert_history.event_to_pb(item.event) if item.event else None
                yield pb.WatchExecutionsResponse(event=event, cursor=item.cursor)
        if watch.stopping:  # the server is going away: UNAVAILABLE tells the client to reconnect, from its cursor
            raise Unavailable("server shutting down; reconnect with your last cursor", reason="SHUTTING_DOWN")


def _peer(context: grpc.ServicerContext) -> str:
    """The caller's address (for limits per caller when the service runs open)."""
    metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
    return peer_address(context.peer(), metadata)


def _in_view(execution: Execution, full: bool) -> pb.Execution:
    """The execution as a listing shows it: without its traceback unless the full view was asked for."""
    message = convert.execution_to_pb(execution)
    if not full:
        message.ClearField("traceback")
    return message
