"""Cancelling executions and handling dead letters: who may, and what each one sees."""

from __future__ import annotations

import pytest

from schedule_grpc.domain.audit import AuditAction
from schedule_grpc.domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from schedule_grpc.domain.models import ExecutionStatus, Trigger
from tests.unit.usecases.world import ADMIN, ALPHA, BETA, OPEN, build, hook


def test_the_owner_cancels_a_pending_or_running_execution_and_the_executor_stops_it() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    pending = world.execution(task, ExecutionStatus.PENDING)
    running = world.execution(task, ExecutionStatus.RUNNING)
    assert world.executions.cancel(ALPHA, pending.id).status is ExecutionStatus.CANCELLED
    assert world.executions.cancel(ADMIN, running.id).status is ExecutionStatus.CANCELLED
    assert world.executor.cancelled == [pending.id, running.id]


def test_another_service_may_not_cancel_and_a_finished_execution_cannot_be() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    pending = world.execution(task, ExecutionStatus.PENDING)
    done = world.execution(task, ExecutionStatus.SUCCESS)
    with pytest.raises(PermissionDenied) as denied:
        world.executions.cancel(BETA, pending.id)
    assert denied.value.reason == "NOT_OWNER"
    assert world.memory.executions[pending.id].status is ExecutionStatus.PENDING
    with pytest.raises(FailedPrecondition) as finished:
        world.executions.cancel(ALPHA, done.id)
    assert finished.value.reason == "EXECUTION_FINISHED"
    with pytest.raises(NotFound):
        world.executions.cancel(OPEN, "exec-none")
    with pytest.raises(InvalidArgument) as empty:
        world.executions.cancel(ALPHA, "")
    assert empty.value.field == "execution_id"


def test_a_service_lists_dead_letters_without_the_errors_of_others_tasks() -> None:
    world = build()
    mine = world.tasks.register(ALPHA, hook("mine"))
    theirs = world.tasks.register(BETA, hook("theirs"))
    world.dead_letter(mine, "my error")
    world.dead_letter(theirs, "their error")
    seen = {
        d.task_name: d.error
        for d in world.executions.dead_letters(ALPHA, task_name="", page_size=0, page_token="").items
    }
    assert seen == {"mine": "my error", "theirs": None}
    everything = world.executions.dead_letters(ADMIN, task_name="", page_size=0, page_token="").items
    assert {d.error for d in everything} == {"my error", "their error"}


def test_dead_letters_are_paged_newest_first_and_listed_by_task() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    letters = [world.dead_letter(task) for _ in range(3)]
    first = world.executions.dead_letters(ALPHA, task_name="ping", page_size=2, page_token="")
    second = world.executions.dead_letters(ALPHA, task_name="ping", page_size=2, page_token=first.next_token)
    assert [d.id for d in [*first.items, *second.items]] == [d.id for d in reversed(letters)]
    assert second.next_token == ""
    with pytest.raises(NotFound):
        world.executions.dead_letters(ALPHA, task_name="nothing-here", page_size=0, page_token="")


def test_an_admin_redrives_a_dead_letter_as_a_new_attempt_due_now() -> None:
    world = build(outcome=None)
    task = world.tasks.register(ALPHA, hook("ping"))
    letter = world.dead_letter(task)
    execution = world.executions.redrive(ADMIN, letter.id)
    assert execution.status is ExecutionStatus.PENDING and execution.trigger is Trigger.RETRY
    assert execution.attempt == letter.attempts + 1 and execution.due_at == world.clock.now()
    assert world.executor.wakes == 1
    assert world.executions.dead_letters(ADMIN, task_name="", page_size=0, page_token="").items == []
    with pytest.raises(NotFound):
        world.executions.redrive(ADMIN, letter.id)
    [entry] = [e for e in world.memory.audit if e.action is AuditAction.DEAD_LETTER_REDRIVEN]
    assert entry.actor == "ops" and entry.subject_id == execution.id and entry.task_name == "ping"


def test_a_dead_letter_of_an_unregistered_task_is_discarded_not_redriven() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    letter = world.dead_letter(task)
    world.tasks.unregister(ALPHA, "ping")
    world.tasks.register(ALPHA, hook("ping"))  # the same name is another task
    with pytest.raises(FailedPrecondition) as raised:
        world.executions.redrive(OPEN, letter.id)
    assert raised.value.reason == "TASK_UNREGISTERED"
    world.executions.discard(OPEN, letter.id)
    with pytest.raises(NotFound):
        world.executions.discard(OPEN, letter.id)
    [entry] = [e for e in world.memory.audit if e.action is AuditAction.DEAD_LETTER_DISCARDED]
    assert entry.actor is None and entry.subject_id == letter.id


def test_only_admins_redrive_or_discard_even_the_dead_letters_of_their_own_tasks() -> None:
    world = build()
    task = world.tasks.register(ALPHA, hook("ping"))
    letter = world.dead_letter(task)
    for act in (world.executions.redrive, world.executions.discard):
        with pytest.raises(PermissionDenied) as raised:
            act(ALPHA, letter.id)
        assert raised.value.reason == "ADMIN_ONLY"
    assert world.memory.dead_letters.keys() == {letter.id}
