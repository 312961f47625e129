"""Retries on the policy's schedule, the dead-letter queue and its RPCs, and email alerts."""

from __future__ import annotations

import itertools
from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from schedule_grpc.app import Replica
from schedule_grpc.domain.models import ErrorCategory, ExecutionStatus, Trigger
from tests.execution.conftest import enqueue_scheduled, history
from tests.execution.smtp import SmtpServer
from tests.support import FakeClock, eventually, register_task


def test_five_failures_retry_after_1_2_4_8_16_s_then_one_dead_letter_and_one_email(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, smtp: SmtpServer
) -> None:
    task = register_task(stub, "always-down", "failing")
    enqueue_scheduled(replica, task.id, task.name, clock.now())
    for attempt in range(1, 6):
        retry = eventually(lambda: [x for x in history(replica, task.name) if x.attempt == attempt + 1])[0]  # noqa: B023
        assert retry.status is ExecutionStatus.PENDING and retry.trigger is Trigger.RETRY
        clock.set(retry.due_at)  # time moves to the retry's due instant, no further
        replica.executor.wake()
    eventually(lambda: stub.ListDeadLetters(pb.ListDeadLettersRequest()).dead_letters)

    attempts = history(replica, task.name)
    assert [x.attempt for x in attempts] == [1, 2, 3, 4, 5, 6]
    assert all(x.status is ExecutionStatus.FAILED for x in attempts)
    assert all(x.error_category is ErrorCategory.NETWORK and "HandlerFailed" in (x.traceback or "") for x in attempts)
    assert {x.scheduled_for for x in attempts} == {attempts[0].scheduled_for}
    gaps = [(b.started_at - a.completed_at).total_seconds() for a, b in itertools.pairwise(attempts)]  # type: ignore[operator]
    assert gaps == [1, 2, 4, 8, 16]

    [letter] = stub.ListDeadLetters(pb.ListDeadLettersRequest(task_name="always-down")).dead_letters
    assert letter.execution_id == attempts[-1].id and letter.attempts == 6
    assert letter.error_category == pb.ERROR_CATEGORY_NETWORK and "remote is down" in letter.error
    [email] = smtp.inbox.wait_for(1)
    assert "always-down" in email["Subject"] and "dead-letter" in email["Subject"]
    assert email["To"] == "ops@example.com, oncall@example.com"
    body = email.get_payload()
    assert letter.id in body and "Stack trace" in body and "HandlerFailed" in body


def test_redrive_runs_one_more_attempt_and_discard_removes(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, smtp: SmtpServer
) -> None:
    task = register_task(stub, "no-retries", "failing", retry_policy=pb.RetryPolicy(max_retries=0))
    enqueue_scheduled(replica, task.id, task.name, clock.now())
    [letter] = eventually(lambda: stub.ListDeadLetters(pb.ListDeadLettersRequest()).dead_letters)
    assert letter.attempts == 1

    redriven = stub.RedriveDeadLetter(pb.RedriveDeadLetterRequest(id=letter.id)).execution
    assert redriven.attempt == 2 and redriven.trigger == pb.EXECUTION_TRIGGER_RETRY
    # It fails again: back in the queue as a new dead letter, a second email.
    [again] = eventually(lambda: stub.ListDeadLetters(pb.ListDeadLettersRequest()).dead_letters)
    assert again.id != letter.id and again.execution_id == redriven.id and again.attempts == 2
    assert len(smtp.inbox.wait_for(2)) == 2

    stub.DiscardDeadLetter(pb.DiscardDeadLetterRequest(id=again.id))
    assert not stub.ListDeadLetters(pb.ListDeadLettersRequest()).dead_letters
    assert len(history(replica, task.name)) == 2  # the history keeps both attempts
    with pytest.raises(grpc.RpcError) as caught:
        stub.DiscardDeadLetter(pb.DiscardDeadLetterRequest(id=again.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        stub.RedriveDeadLetter(pb.RedriveDeadLetterRequest(id=letter.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListDeadLetters(pb.ListDeadLettersRequest(task_name="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_critical_task_alerts_on_first_failure_and_handlers_report_alerts(
    replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock, smtp: SmtpServer
) -> None:
    register_task(stub, "vital", "failing", critical=True)
    response = stub.RunTaskNow(pb.RunTaskNowRequest(name="vital"))
    assert not response.success and "remote is down" in response.message
    register_task(stub, "monitor", "alerting")
    assert stub.RunTaskNow(pb.RunTaskNowRequest(name="monitor")).success
    subjects = sorted(m["Subject"] for m in smtp.inbox.wait_for(2))
    assert subjects == ["[schedule] critical task vital failed (attempt 1)", "service db is down"]


def test_dead_letter_pages(replica: Replica, stub: pb_grpc.ScheduleServiceStub, clock: FakeClock) -> None:
    task = register_task(stub, "pages", "failing", retry_policy=pb.RetryPolicy(max_retries=0))
    for minute in range(3):
        enqueue_scheduled(replica, task.id, task.name, clock.now() + timedelta(minutes=-minute))
    eventually(lambda: len(stub.ListDeadLetters(pb.ListDeadLettersRequest()).dead_letters) == 3)
    first = stub.ListDeadLetters(pb.ListDeadLettersRequest(page_size=2))
    rest = stub.ListDeadLetters(pb.ListDeadLettersRequest(page_size=2, page_token=first.next_page_token))
    assert len(first.dead_letters) == 2 and len(rest.dead_letters) == 1 and not rest.next_page_token
    assert len({d.id for d in [*first.dead_letters, *rest.dead_letters]}) == 3


def test_a_broken_smtp_server_never_holds_up_executions(database_url: str, clock: FakeClock, smtp: SmtpServer) -> None:
    from schedule_grpc.app import build
    from tests.execution.conftest import registry, replica_settings

    settings = replica_settings(database_url, smtp, smtp_port=9, smtp_retries=1)  # nothing listens on port 9
    svc = build(settings, clock=clock, handlers=registry())
    svc.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = pb_grpc.ScheduleServiceStub(channel)
            register_task(stub, "vital", "failing", critical=True, timeout=duration_pb2.Duration(seconds=5))
            for _ in range(3):
                response = stub.RunTaskNow(pb.RunTaskNowRequest(name="vital"), timeout=5)
                assert not response.success and response.execution.error_category == pb.ERROR_CATEGORY_NETWORK
    finally:
        svc.stop()
    assert smtp.inbox.messages == []
