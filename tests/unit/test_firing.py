"""Catch-up and overlap decisions, and the engine's trigger: pure, with instants passed in."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from schedule_grpc.domain.cron import CronSchedule
from schedule_grpc.domain.firing import MAX_MISSED_RECORDED, ON_TIME_GRACE, catch_up, decide
from schedule_grpc.domain.models import ExecutionStatus, OverlapPolicy
from schedule_grpc.scheduling.jobs import fire
from schedule_grpc.scheduling.trigger import CronTaskTrigger

NOW = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

P, M, S = ExecutionStatus.PENDING, ExecutionStatus.MISSED, ExecutionStatus.SKIPPED


@pytest.mark.parametrize(
    ("overlap", "window", "late", "pending", "running", "expected"),
    [
        (OverlapPolicy.SKIP, HOUR, timedelta(0), 0, 0, P),
        (OverlapPolicy.SKIP, HOUR, timedelta(minutes=59), 0, 0, P),  # inside the window: runs late
        (OverlapPolicy.SKIP, HOUR, timedelta(minutes=61), 0, 0, M),
        (OverlapPolicy.SKIP, timedelta(0), timedelta(seconds=5), 0, 0, P),  # engine lag is not a miss
        (OverlapPolicy.SKIP, timedelta(0), ON_TIME_GRACE + timedelta(seconds=1), 0, 0, M),
        (OverlapPolicy.SKIP, HOUR, timedelta(0), 0, 1, S),
        (OverlapPolicy.SKIP, HOUR, timedelta(0), 1, 0, S),
        (OverlapPolicy.ALLOW, HOUR, timedelta(0), 3, 1, P),
        (OverlapPolicy.QUEUE_ONE, HOUR, timedelta(0), 0, 1, P),  # one may wait behind the running one
        (OverlapPolicy.QUEUE_ONE, HOUR, timedelta(0), 1, 1, S),
        (OverlapPolicy.ALLOW, HOUR, timedelta(hours=2), 0, 0, M),  # missed wins over overlap
    ],
)
def test_each_occurrence_gets_the_status_its_policies_call_for(
    overlap: OverlapPolicy, window: timedelta, late: timedelta, pending: int, running: int, expected: ExecutionStatus
) -> None:
    decision = decide(
        overlap=overlap, catchup_window=window, scheduled_for=NOW - late, now=NOW, pending=pending, running=running
    )
    assert decision.status is expected
    assert (decision.error is None) == (expected is P)


def test_a_skipped_occurrence_says_why() -> None:
    decision = decide(overlap=OverlapPolicy.SKIP, catchup_window=HOUR, scheduled_for=NOW, now=NOW, pending=0, running=1)
    assert decision.error == "skipped: the previous execution is still running (overlap policy skip)"


def test_catch_up_lists_every_instant_since_the_resume_point_and_the_next_one() -> None:
    schedule = CronSchedule.parse("*/15 * * * *")
    found, nxt = catch_up(schedule, "t", NOW - HOUR, NOW, HOUR)
    assert [o.scheduled_for for o in found] == [NOW - HOUR + timedelta(minutes=15 * i) for i in range(5)]
    assert nxt == NOW + timedelta(minutes=15)


def test_a_week_down_records_a_bounded_number_of_missed_minutes_and_says_so() -> None:
    schedule = CronSchedule.parse("* * * * *")
    found, nxt = catch_up(schedule, "t", NOW - timedelta(days=7), NOW, HOUR)
    missed = [o for o in found if o.scheduled_for < NOW - HOUR]
    inside = [o for o in found if o.scheduled_for >= NOW - HOUR]
    assert len(missed) == MAX_MISSED_RECORDED
    assert missed[-1].note is not None and "not recorded one by one" in missed[-1].note
    assert len(inside) == 61  # every minute of the last hour, both ends included
    assert nxt == NOW + timedelta(minutes=1)


def test_the_trigger_fires_from_the_schedule_not_from_when_it_ran() -> None:
    trigger = CronTaskTrigger("*/5 * * * *", "UTC")
    scheduled = datetime(2030, 1, 1, 0, 5, tzinfo=UTC)
    ran_late = scheduled + timedelta(minutes=3, seconds=7)
    assert trigger.get_next_fire_time(scheduled, ran_late) == datetime(2030, 1, 1, 0, 10, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, scheduled) == scheduled  # an instant equal to now is due


def test_the_trigger_follows_cron_daylight_saving_rules() -> None:
    trigger = CronTaskTrigger("30 2 * * *", "America/New_York")
    before_gap = datetime(2030, 3, 9, 12, tzinfo=UTC)
    # 02:30 does not exist on 10 March 2030; cron runs a fixed-time job at the jump instant (03:00 EDT).
    assert trigger.get_next_fire_time(None, before_gap) == datetime(2030, 3, 10, 7, 0, tzinfo=UTC)


def test_the_trigger_pickles_as_its_expression_and_zone_only() -> None:
    trigger = CronTaskTrigger("0 9 * * mon-fri", "Europe/Paris")
    assert trigger.__getstate__() == {"version": 1, "expression": "0 9 * * mon-fri", "timezone": "Europe/Paris"}
    restored = pickle.loads(pickle.dumps(trigger))
    assert restored == trigger and hash(restored) == hash(trigger)
    assert str(restored) == "cron['0 9 * * mon-fri' in Europe/Paris]" and "Europe/Paris" in repr(restored)
    with pytest.raises(ValueError, match="state version"):
        CronTaskTrigger.__new__(CronTaskTrigger).__setstate__({"version": 99})


def test_the_job_function_refuses_to_fire_outside_the_engine() -> None:
    with pytest.raises(RuntimeError, match="outside the scheduling engine"):
        fire("task-1")
