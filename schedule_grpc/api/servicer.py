"""The schedule.v1.ScheduleService servicer: parse, call one use case, convert."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.api import convert, convert_history
from schedule_grpc.errors import Unimplemented
from schedule_grpc.models import ExecutionStatus
from schedule_grpc.queue_service import QueueService
from schedule_grpc.service import TaskService
from schedule_grpc.watch import WatchService


class ScheduleServicer(pb_grpc.ScheduleServiceServicer):
    """Domain errors raised here are mapped to statuses by api.status.ErrorInterceptor."""

    def __init__(
        self, tasks: TaskService, queue: QueueService | None = None, watch: WatchService | None = None
    ) -> None:
        self._tasks = tasks
        self._queue = queue
        self._watch = watch

    def _operations(self) -> QueueService:
        if self._queue is None:
            raise Unimplemented("this server runs no executor", reason="EXECUTOR_UNAVAILABLE")
        return self._queue

    def RegisterTask(self, request: pb.RegisterTaskRequest, context: grpc.ServicerContext) -> pb.RegisterTaskResponse:
        task = self._tasks.register(convert.new_task_from_pb(request))
        return pb.RegisterTaskResponse(
            task=convert.task_to_pb(task), message=f"Task {task.name} registered successfully"
        )

    def UnregisterTask(
        self, request: pb.UnregisterTaskRequest, context: grpc.ServicerContext
    ) -> pb.UnregisterTaskResponse:
        self._tasks.unregister(request.name, cancel_running=request.cancel_running)
        return pb.UnregisterTaskResponse(message=f"Task {request.name} unregistered")

    def EnableTask(self, request: pb.EnableTaskRequest, context: grpc.ServicerContext) -> pb.EnableTaskResponse:
        task = self._tasks.enable(request.name)
        return pb.EnableTaskResponse(message=f"Task {task.name} enabled", task=convert.task_to_pb(task))

    def DisableTask(self, request: pb.DisableTaskRequest, context: grpc.ServicerContext) -> pb.DisableTaskResponse:
        task = self._tasks.disable(request.name, cancel_running=request.cancel_running)
        return pb.DisableTaskResponse(message=f"Task {task.name} disabled", task=convert.task_to_pb(task))

    def GetTask(self, request: pb.GetTaskRequest, context: grpc.ServicerContext) -> pb.GetTaskResponse:
        return pb.GetTaskResponse(task=convert.task_to_pb(self._tasks.get(request.name)))

    def ListTasks(self, request: pb.ListTasksRequest, context: grpc.ServicerContext) -> pb.ListTasksResponse:
        page = self._tasks.list(page_size=request.page_size, page_token=request.page_token)
        return pb.ListTasksResponse(tasks=[convert.task_to_pb(t) for t in page.items], next_page_token=page.next_token)

    def RunTaskNow(self, request: pb.RunTaskNowRequest, context: grpc.ServicerContext) -> pb.RunTaskNowResponse:
        execution = self._tasks.run_now(request.name, wait_s=context.time_remaining())
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
        page = self._tasks.history(
            request.name,
            limit=request.limit,
            page_token=request.page_token,
            selector=convert_history.history_filter_from_pb(request),
        )
        return pb.GetTaskHistoryResponse(
            history=[convert.execution_to_pb(e) for e in page.items], next_page_token=page.next_token
        )

    def GetRecentExecutions(
        self, request: pb.GetRecentExecutionsRequest, context: grpc.ServicerContext
    ) -> pb.GetRecentExecutionsResponse:
        page = self._tasks.recent(
            limit=request.limit,
            page_token=request.page_token,
            selector=convert_history.recent_filter_from_pb(request),
        )
        return pb.GetRecentExecutionsResponse(
            executions=[convert.execution_to_pb(e) for e in page.items], next_page_token=page.next_token
        )

    def ListHandlers(self, request: pb.ListHandlersRequest, context: grpc.ServicerContext) -> pb.ListHandlersResponse:
        handlers = self._tasks.handlers()
        return pb.ListHandlersResponse(
            handlers=[h.name for h in handlers], handler_details=[convert.handler_to_pb(h) for h in handlers]
        )

    def InitializeDefaultTasks(
        self, request: pb.InitializeDefaultTasksRequest, context: grpc.ServicerContext
    ) -> pb.InitializeDefaultTasksResponse:
        tasks = self._tasks.initialize_defaults()
        return pb.InitializeDefaultTasksResponse(
            message="Default tasks initialized", tasks=[convert.task_to_pb(t) for t in tasks]
        )

    def PreviewSchedule(
        self, request: pb.PreviewScheduleRequest, context: grpc.ServicerContext
    ) -> pb.PreviewScheduleResponse:
        start = convert.from_timestamp(request.start_time) if request.HasField("start_time") else None
        instants = self._tasks.preview(request.schedule, request.timezone, start, request.count)
        return pb.PreviewScheduleResponse(next_run_times=[convert.timestamp(t) for t in instants])

    def CancelExecution(
        self, request: pb.CancelExecutionRequest, context: grpc.ServicerContext
    ) -> pb.CancelExecutionResponse:
        execution = self._operations().cancel(request.execution_id)
        return pb.CancelExecutionResponse(
            execution=convert.execution_to_pb(execution), message=f"Execution {execution.id} cancelled"
        )

    def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        page = self._operations().dead_letters(
            task_name=request.task_name, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListDeadLettersResponse(
            dead_letters=[convert.dead_letter_to_pb(d) for d in page.items], next_page_token=page.next_token
        )

    def RedriveDeadLetter(
        self, request: pb.RedriveDeadLetterRequest, context: grpc.ServicerContext
    ) -> pb.RedriveDeadLetterResponse:
        execution = self._operations().redrive(request.id)
        return pb.RedriveDeadLetterResponse(
            execution=convert.execution_to_pb(execution),
            message=f"Dead letter {request.id} redriven as execution {execution.id}",
        )

    def DiscardDeadLetter(
        self, request: pb.DiscardDeadLetterRequest, context: grpc.ServicerContext
    ) -> pb.DiscardDeadLetterResponse:
        self._operations().discard(request.id)
        return pb.DiscardDeadLetterResponse(message=f"Dead letter {request.id} discarded")

    def WatchExecutions(
        self, request: pb.WatchExecutionsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchExecutionsResponse]:
        if self._watch is None:
            raise Unimplemented("WatchExecutions is not served by this server", reason="WATCH_UNAVAILABLE")
        watch = self._watch
        context.add_callback(watch.wake)  # a cancelled stream gives its thread back at once
        for item in watch.watch(convert_history.event_filter_from_pb(request), request.cursor, context.is_active):
            event = convert_history.event_to_pb(item.event) if item.event else None
            yield pb.WatchExecutionsResponse(event=event, cursor=item.cursor)
