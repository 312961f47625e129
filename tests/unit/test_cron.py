"""Tests for schedule_grpc.domain.cron: crontab(5) syntax and cron(8) (cronie) DST rules.

Every expected instant below is derived by hand from crontab(5) / cronie's
cron(8) rules and the zone's published offsets; offsets are written next to
each DST case so a reviewer can re-check the arithmetic (UTC = local - offset).
"""

from __future__ import annotations

import copy
import itertools
import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedule_grpc.domain.cron import NICKNAMES, CronSchedule, InvalidSchedule, validate_timezone

NEW_YORK = ZoneInfo("America/New_York")


def z(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """An aware UTC instant."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def take(schedule: CronSchedule, after: datetime, count: int) -> list[datetime]:
    iterator = schedule.iter_after(after)
    return [next(iterator) for _ in range(count)]


# ---------------------------------------------------------------------------
# Plain schedules (UTC, so local time == UTC).
# ---------------------------------------------------------------------------

BASIC_CASES = [
    # nicknames
    ("@yearly", z(2024, 3, 15, 12), [z(2025, 1, 1), z(2026, 1, 1)]),
    ("@annually", z(2024, 3, 15, 12), [z(2025, 1, 1), z(2026, 1, 1)]),
    ("@monthly", z(2024, 1, 31), [z(2024, 2, 1), z(2024, 3, 1)]),
    # 2024-05-01 is a Wednesday; the next Sundays are May 5 and 12.
    ("@weekly", z(2024, 5, 1), [z(2024, 5, 5), z(2024, 5, 12)]),
    ("@daily", z(2024, 5, 1, 10), [z(2024, 5, 2), z(2024, 5, 3)]),
    ("@midnight", z(2024, 5, 1, 10), [z(2024, 5, 2), z(2024, 5, 3)]),
    ("@hourly", z(2024, 5, 1, 10, 30), [z(2024, 5, 1, 11), z(2024, 5, 1, 12)]),
    # steps
    ("*/5 * * * *", z(2024, 5, 1, 10, 2, 30), [z(2024, 5, 1, 10, 5), z(2024, 5, 1, 10, 10), z(2024, 5, 1, 10, 15)]),
    ("1-30/5 * * * *", z(2024, 5, 1, 10, 26), [z(2024, 5, 1, 11, 1), z(2024, 5, 1, 11, 6)]),
    ("15 */6 * * *", z(2024, 5, 1, 6, 15), [z(2024, 5, 1, 12, 15), z(2024, 5, 1, 18, 15), z(2024, 5, 2, 0, 15)]),
    # minutes {0,5,10} and {50,53,56,59}
    (
        "0-10/5,50-59/3 * * * *",
        z(2024, 5, 1, 10, 10),
        [z(2024, 5, 1, 10, 50), z(2024, 5, 1, 10, 53), z(2024, 5, 1, 10, 56), z(2024, 5, 1, 10, 59), z(2024, 5, 1, 11)],
    ),
    ("*/59 * * * *", z(2024, 5, 1, 10, 1), [z(2024, 5, 1, 10, 59), z(2024, 5, 1, 11, 0)]),
    ("0-10/10 3 * * *", z(2024, 5, 1), [z(2024, 5, 1, 3, 0), z(2024, 5, 1, 3, 10), z(2024, 5, 2, 3, 0)]),
    # months {1,4,7,10}, first minute of each day
    ("0 0 * */3 *", z(2024, 1, 31), [z(2024, 4, 1), z(2024, 4, 2)]),
    ("0 0 1 jan-mar/2 *", z(2024, 1, 1), [z(2024, 3, 1), z(2025, 1, 1)]),
    ("05 04 * * *", z(2024, 5, 1), [z(2024, 5, 1, 4, 5), z(2024, 5, 2, 4, 5)]),
    # strictly after: exactly on a fire time gives the next one
    ("0 2 * * *", z(2024, 5, 1, 2), [z(2024, 5, 2, 2), z(2024, 5, 3, 2)]),
    # Sunday is 0 and 7
    ("0 0 * * 0", z(2024, 5, 1), [z(2024, 5, 5), z(2024, 5, 12)]),
    ("0 0 * * 7", z(2024, 5, 1), [z(2024, 5, 5), z(2024, 5, 12)]),
    ("0 0 * * sun", z(2024, 5, 1), [z(2024, 5, 5), z(2024, 5, 12)]),
    ("0 0 * * SUN", z(2024, 5, 1), [z(2024, 5, 5), z(2024, 5, 12)]),
    # 2024-05-06 is a Monday: Fri 10, Sat 11, Sun 12 (7 ends the range)
    ("0 0 * * 5-7", z(2024, 5, 6), [z(2024, 5, 10), z(2024, 5, 11), z(2024, 5, 12), z(2024, 5, 17)]),
    ("0 9 * * mon-fri", z(2024, 5, 3, 10), [z(2024, 5, 6, 9), z(2024, 5, 7, 9)]),
    # names, any case; day-of-month '*' -> only Mondays in January and July
    # (2024-01-01 is a Monday, so are Jan 22, Jan 29 and Jul 1)
    ("0 12 * jan,JUL Mon", z(2024, 1, 20), [z(2024, 1, 22, 12), z(2024, 1, 29, 12), z(2024, 7, 1, 12)]),
    # day-of-month '*' AND day-of-week restricted -> Mondays only
    ("0 0 * * 1", z(2024, 5, 1), [z(2024, 5, 6), z(2024, 5, 13)]),
    # day-of-week '*' -> day-of-month only
    ("0 0 15 * *", z(2024, 5, 1), [z(2024, 5, 15), z(2024, 6, 15)]),
    # both restricted -> EITHER (crontab(5) example "30 4 1,15 * 5"): May 2024 Fridays
    # are 3, 10, 17, 24, 31; the 15th is a Wednesday; June 1 is a Saturday.
    (
        "30 4 1,15 * 5",
        z(2024, 5, 1, 5),
        [
            z(2024, 5, 3, 4, 30),
            z(2024, 5, 10, 4, 30),
            z(2024, 5, 15, 4, 30),
            z(2024, 5, 17, 4, 30),
            z(2024, 5, 24, 4, 30),
            z(2024, 5, 31, 4, 30),
            z(2024, 6, 1, 4, 30),
        ],
    ),
    # 2024-09-13 is a Friday: the 13th OR any Friday, no special "Friday 13th"
    ("0 0 13 * fri", z(2024, 9, 1), [z(2024, 9, 6), z(2024, 9, 13), z(2024, 9, 20), z(2024, 9, 27), z(2024, 10, 4)]),
    # "1-31/2" does not start with '*', so it ORs with Monday: odd days plus Mondays
    # (2024-07-01 Mon, 3 Wed, 5 Fri, 7 Sun, 8 Mon, 9 Tue)
    ("0 0 1-31/2 * mon", z(2024, 7, 1), [z(2024, 7, 3), z(2024, 7, 5), z(2024, 7, 7), z(2024, 7, 8), z(2024, 7, 9)]),
    # '*/2' day-of-month with day-of-week '*' is fine: odd days (31 -> 1 of next month)
    ("0 0 */2 * *", z(2024, 1, 29), [z(2024, 1, 31), z(2024, 2, 1), z(2024, 2, 3)]),
    # day-of-month '*' with day-of-week '*/2' is fine: Sun, Tue, Thu, Sat (2024-05-01 Wed)
    ("0 0 * * */2", z(2024, 5, 1), [z(2024, 5, 2), z(2024, 5, 4), z(2024, 5, 5), z(2024, 5, 7)]),
    # month ends
    ("0 0 31 * *", z(2024, 1, 31), [z(2024, 3, 31), z(2024, 5, 31), z(2024, 7, 31), z(2024, 8, 31)]),
    ("0 0 30 * *", z(2024, 1, 30), [z(2024, 3, 30), z(2024, 4, 30)]),
    # leap years
    ("0 0 29 2 *", z(2024, 3, 1), [z(2028, 2, 29), z(2032, 2, 29)]),
    ("0 0 29 2 *", z(2023, 6, 1), [z(2024, 2, 29), z(2028, 2, 29)]),
    # 2100 is not a leap year
    ("0 0 29 2 *", z(2096, 3, 1), [z(2104, 2, 29)]),
    ("0 0 28-31 feb *", z(2023, 2, 27), [z(2023, 2, 28), z(2024, 2, 28), z(2024, 2, 29), z(2025, 2, 28)]),
]


@pytest.mark.parametrize(("expression", "after", "expected"), BASIC_CASES)
def test_basic_schedules(expression: str, after: datetime, expected: list[datetime]) -> None:
    schedule = CronSchedule.parse(expression)
    assert take(schedule, after, len(expected)) == expected
    assert schedule.next_after(after) == expected[0]


@pytest.mark.parametrize(
    ("expression", "timezone", "after", "expected"),
    [
        # Asia/Kolkata is UTC+05:30 all year: 09:00 IST = 03:30Z
        ("0 9 * * *", "Asia/Kolkata", z(2024, 5, 1), z(2024, 5, 1, 3, 30)),
        # Asia/Kathmandu is UTC+05:45: 09:00 = 03:15Z
        ("0 9 * * *", "Asia/Kathmandu", z(2024, 5, 1), z(2024, 5, 1, 3, 15)),
        # 2024-05-01 01:00Z is 2024-04-30 21:00 EDT (-4): next midnight, May 1 00:00 EDT = May 1 04:00Z
        ("@daily", "America/New_York", z(2024, 5, 1, 1), z(2024, 5, 1, 4)),
        # Monday 09:00 in Tokyo (+9) = Monday 00:00Z; 2024-05-06 is a Monday
        ("0 9 * * mon", "Asia/Tokyo", z(2024, 5, 1), z(2024, 5, 6, 0)),
    ],
)
def test_time_zone_without_transition(expression: str, timezone: str, after: datetime, expected: datetime) -> None:
    assert CronSchedule.parse(expression, timezone).next_after(after) == expected


# ---------------------------------------------------------------------------
# Daylight saving time (cronie rules).  "fixed" = minute and hour fields do not
# start with '*'; "wildcard" = one of them does.
# ---------------------------------------------------------------------------

DST_CASES = [
    # ---- America/New_York: EST -05:00, EDT -04:00 -------------------------
    # Spring 2024-03-10: 02:00 EST -> 03:00 EDT at 07:00Z; 02:00-02:59 is skipped.
    pytest.param(
        "America/New_York", "30 2 * * *", z(2024, 3, 9, 12),
        # 02:30 skipped -> jump instant 03:00 EDT = 07:00Z; Mar 11 02:30 EDT = 06:30Z
        [z(2024, 3, 10, 7, 0), z(2024, 3, 11, 6, 30)],
        id="ny-fixed-in-gap",
    ),
    pytest.param(
        "America/New_York", "0,30 2 * * *", z(2024, 3, 9, 12),
        # 02:00 and 02:30 both skipped -> one fire at 07:00Z; Mar 11 02:00/02:30 EDT = 06:00Z/06:30Z
        [z(2024, 3, 10, 7, 0), z(2024, 3, 11, 6, 0), z(2024, 3, 11, 6, 30)],
        id="ny-two-fixed-times-in-gap-fire-once",
    ),
    pytest.param(
        "America/New_York", "0 2,3 * * *", z(2024, 3, 9, 12),
        # 02:00 (skipped) and 03:00 EDT both mean 07:00Z -> reported once
        [z(2024, 3, 10, 7, 0), z(2024, 3, 11, 6, 0), z(2024, 3, 11, 7, 0)],
        id="ny-gap-jump-coincides-with-real-time",
    ),
    pytest.param(
        "America/New_York", "59 1 * * *", z(2024, 3, 9, 12),
        # 01:59 EST (-5) = 06:59Z: just before the gap, normal
        [z(2024, 3, 10, 6, 59), z(2024, 3, 11, 5, 59)],
        id="ny-fixed-before-gap",
    ),
    pytest.param(
        "America/New_York", "0 * * * *", z(2024, 3, 10, 5, 30),
        # 01:00 EST = 06:00Z, 02:00 does not exist, 03:00 EDT = 07:00Z, 04:00 EDT = 08:00Z
        [z(2024, 3, 10, 6), z(2024, 3, 10, 7), z(2024, 3, 10, 8)],
        id="ny-hourly-across-gap",
    ),
    pytest.param(
        "America/New_York", "*/15 * * * *", z(2024, 3, 10, 6, 30),
        # 01:45 EST = 06:45Z, then 03:00 EDT = 07:00Z, 03:15 EDT = 07:15Z
        [z(2024, 3, 10, 6, 45), z(2024, 3, 10, 7, 0), z(2024, 3, 10, 7, 15)],
        id="ny-every-15-across-gap",
    ),
    pytest.param(
        "America/New_York", "*/30 2 * * *", z(2024, 3, 10),
        # minute starts with '*' -> wildcard job: 02:xx never exists on Mar 10, no jump fire;
        # Mar 11 02:00 EDT = 06:00Z
        [z(2024, 3, 11, 6, 0), z(2024, 3, 11, 6, 30)],
        id="ny-wildcard-minute-fixed-hour-in-gap-skipped",
    ),
    # Fall 2024-11-03: 02:00 EDT -> 01:00 EST at 06:00Z; 01:00-01:59 occurs twice.
    pytest.param(
        "America/New_York", "30 1 * * *", z(2024, 11, 2, 12),
        # 01:30 EDT (-4) = 05:30Z only (not 01:30 EST = 06:30Z); Nov 4 01:30 EST = 06:30Z
        [z(2024, 11, 3, 5, 30), z(2024, 11, 4, 6, 30)],
        id="ny-fixed-in-overlap-first-only",
    ),
    pytest.param(
        "America/New_York", "0 1-3 * * *", z(2024, 11, 3),
        # fixed (hour '1-3' does not start with '*'): 01:00 EDT = 05:00Z once,
        # 02:00 EST = 07:00Z, 03:00 EST = 08:00Z
        [z(2024, 11, 3, 5), z(2024, 11, 3, 7), z(2024, 11, 3, 8)],
        id="ny-fixed-hour-range-in-overlap",
    ),
    pytest.param(
        "America/New_York", "0 * * * *", z(2024, 11, 3, 3, 30),
        # 00:00 EDT = 04:00Z, 01:00 EDT = 05:00Z, 01:00 EST = 06:00Z, 02:00 EST = 07:00Z
        [z(2024, 11, 3, 4), z(2024, 11, 3, 5), z(2024, 11, 3, 6), z(2024, 11, 3, 7)],
        id="ny-hourly-across-overlap-runs-twice",
    ),
    pytest.param(
        "America/New_York", "*/15 * * * *", z(2024, 11, 3, 5, 30),
        # 01:45 EDT = 05:45Z, then second pass 01:00..01:45 EST = 06:00..06:45Z, 02:00 EST = 07:00Z
        [
            z(2024, 11, 3, 5, 45), z(2024, 11, 3, 6, 0), z(2024, 11, 3, 6, 15),
            z(2024, 11, 3, 6, 30), z(2024, 11, 3, 6, 45), z(2024, 11, 3, 7, 0),
        ],
        id="ny-every-15-across-overlap",
    ),
    pytest.param(
        "America/New_York", "*/30 1 * * *", z(2024, 11, 3),
        # wildcard (minute '*/30'): 01:00/01:30 EDT = 05:00Z/05:30Z and 01:00/01:30 EST = 06:00Z/06:30Z
        [z(2024, 11, 3, 5), z(2024, 11, 3, 5, 30), z(2024, 11, 3, 6), z(2024, 11, 3, 6, 30), z(2024, 11, 4, 6)],
        id="ny-wildcard-minute-fixed-hour-in-overlap-twice",
    ),
    # ---- Australia/Lord_Howe: LHST +10:30, LHDT +11:00 (30-minute shift) ---
    # Spring 2024-10-06: 02:00 LHST -> 02:30 LHDT at 2024-10-05 15:30Z; 02:00-02:29 skipped.
    pytest.param(
        "Australia/Lord_Howe", "15 2 * * *", z(2024, 10, 5),
        # Oct 6 02:15 skipped -> jump 02:30 LHDT = Oct 5 15:30Z; Oct 7 02:15 LHDT = Oct 6 15:15Z
        [z(2024, 10, 5, 15, 30), z(2024, 10, 6, 15, 15)],
        id="lordhowe-fixed-in-gap",
    ),
    pytest.param(
        "Australia/Lord_Howe", "45 2 * * *", z(2024, 10, 5),
        # 02:45 exists (after the gap): 02:45 LHDT = 15:45Z
        [z(2024, 10, 5, 15, 45), z(2024, 10, 6, 15, 45)],
        id="lordhowe-fixed-after-gap",
    ),
    pytest.param(
        "Australia/Lord_Howe", "0 * * * *", z(2024, 10, 5, 14),
        # 01:00 LHST (+10:30) = 14:30Z, 02:00 does not exist, 03:00 LHDT (+11) = 16:00Z, 04:00 = 17:00Z
        [z(2024, 10, 5, 14, 30), z(2024, 10, 5, 16), z(2024, 10, 5, 17)],
        id="lordhowe-hourly-across-gap",
    ),
    pytest.param(
        "Australia/Lord_Howe", "*/15 * * * *", z(2024, 10, 5, 15),
        # 01:45 LHST = 15:15Z, 02:00/02:15 do not exist, 02:30 LHDT = 15:30Z, 02:45 LHDT = 15:45Z
        [z(2024, 10, 5, 15, 15), z(2024, 10, 5, 15, 30), z(2024, 10, 5, 15, 45)],
        id="lordhowe-every-15-across-gap",
    ),
    # Fall 2024-04-07: 02:00 LHDT -> 01:30 LHST at 2024-04-06 15:00Z; 01:30-01:59 occurs twice.
    pytest.param(
        "Australia/Lord_Howe", "45 1 * * *", z(2024, 4, 6),
        # 01:45 LHDT (+11) = Apr 6 14:45Z only; Apr 8 01:45 LHST (+10:30) = Apr 7 15:15Z
        [z(2024, 4, 6, 14, 45), z(2024, 4, 7, 15, 15)],
        id="lordhowe-fixed-in-overlap-first-only",
    ),
    pytest.param(
        "Australia/Lord_Howe", "0 * * * *", z(2024, 4, 6, 13, 30),
        # 01:00 LHDT = 14:00Z; 01:00 is not repeated (only 01:30-01:59 is);
        # 02:00 LHST = 15:30Z, 03:00 LHST = 16:30Z
        [z(2024, 4, 6, 14), z(2024, 4, 6, 15, 30), z(2024, 4, 6, 16, 30)],
        id="lordhowe-hourly-across-overlap",
    ),
    pytest.param(
        "Australia/Lord_Howe", "*/15 * * * *", z(2024, 4, 6, 14, 20),
        # 01:30/01:45 LHDT = 14:30Z/14:45Z, 01:30/01:45 LHST = 15:00Z/15:15Z, 02:00 LHST = 15:30Z
        [z(2024, 4, 6, 14, 30), z(2024, 4, 6, 14, 45), z(2024, 4, 6, 15), z(2024, 4, 6, 15, 15), z(2024, 4, 6, 15, 30)],
        id="lordhowe-every-15-across-overlap",
    ),
    # ---- Australia/Sydney: AEST +10, AEDT +11 -------------------------------
    # Spring 2024-10-06: 02:00 AEST -> 03:00 AEDT at 2024-10-05 16:00Z.
    pytest.param(
        "Australia/Sydney", "30 2 * * *", z(2024, 10, 5),
        # 02:30 skipped -> 03:00 AEDT = Oct 5 16:00Z; Oct 7 02:30 AEDT = Oct 6 15:30Z
        [z(2024, 10, 5, 16), z(2024, 10, 6, 15, 30)],
        id="sydney-fixed-in-gap",
    ),
    pytest.param(
        "Australia/Sydney", "0 * * * *", z(2024, 10, 5, 14, 30),
        # 01:00 AEST = 15:00Z, 02:00 skipped, 03:00 AEDT = 16:00Z, 04:00 AEDT = 17:00Z
        [z(2024, 10, 5, 15), z(2024, 10, 5, 16), z(2024, 10, 5, 17)],
        id="sydney-hourly-across-gap",
    ),
    # Fall 2024-04-07: 03:00 AEDT -> 02:00 AEST at 2024-04-06 16:00Z; 02:00-02:59 twice.
    pytest.param(
        "Australia/Sydney", "30 2 * * *", z(2024, 4, 6),
        # 02:30 AEDT = Apr 6 15:30Z only; Apr 8 02:30 AEST = Apr 7 16:30Z
        [z(2024, 4, 6, 15, 30), z(2024, 4, 7, 16, 30)],
        id="sydney-fixed-in-overlap-first-only",
    ),
    pytest.param(
        "Australia/Sydney", "0 * * * *", z(2024, 4, 6, 14, 30),
        # 02:00 AEDT = 15:00Z, 02:00 AEST = 16:00Z, 03:00 AEST = 17:00Z
        [z(2024, 4, 6, 15), z(2024, 4, 6, 16), z(2024, 4, 6, 17)],
        id="sydney-hourly-across-overlap",
    ),
    # ---- America/Santiago: -04 standard, -03 summer; changes at local midnight ----
    # Spring 2024-09-08 (Sunday): 00:00 -04 -> 01:00 -03 at 04:00Z; midnight does not exist.
    pytest.param(
        "America/Santiago", "@daily", z(2024, 9, 7, 12),
        # Sep 8 00:00 skipped -> jump 01:00 -03 = 04:00Z; Sep 9 00:00 -03 = 03:00Z
        [z(2024, 9, 8, 4), z(2024, 9, 9, 3)],
        id="santiago-daily-midnight-in-gap",
    ),
    pytest.param(
        "America/Santiago", "0 0 * * sun", z(2024, 9, 7, 12),
        # Sunday Sep 8 00:00 skipped -> 04:00Z; Sunday Sep 15 00:00 -03 = 03:00Z
        [z(2024, 9, 8, 4), z(2024, 9, 15, 3)],
        id="santiago-sunday-midnight-in-gap",
    ),
    pytest.param(
        "America/Santiago", "0 * * * *", z(2024, 9, 8, 2, 30),
        # Sep 7 23:00 -04 = 03:00Z, Sep 8 00:00 skipped, 01:00 -03 = 04:00Z, 02:00 -03 = 05:00Z
        [z(2024, 9, 8, 3), z(2024, 9, 8, 4), z(2024, 9, 8, 5)],
        id="santiago-hourly-across-gap",
    ),
    # Fall 2024-04-07: 00:00 -03 -> Saturday Apr 6 23:00 -04 at 03:00Z; Sat 23:00-23:59 twice.
    pytest.param(
        "America/Santiago", "30 23 * * sat", z(2024, 4, 6, 12),
        # Sat Apr 6 23:30 -03 = Apr 7 02:30Z only; Sat Apr 13 23:30 -04 = Apr 14 03:30Z
        [z(2024, 4, 7, 2, 30), z(2024, 4, 14, 3, 30)],
        id="santiago-fixed-in-overlap-first-only",
    ),
    pytest.param(
        "America/Santiago", "*/30 * * * *", z(2024, 4, 7, 2, 15),
        # 23:30 -03 = 02:30Z, 23:00 -04 = 03:00Z, 23:30 -04 = 03:30Z, Apr 7 00:00 -04 = 04:00Z
        [z(2024, 4, 7, 2, 30), z(2024, 4, 7, 3), z(2024, 4, 7, 3, 30), z(2024, 4, 7, 4)],
        id="santiago-every-30-across-overlap",
    ),
    # ---- Europe/London: GMT +00, BST +01 ------------------------------------
    # Spring 2024-03-31: 01:00 GMT -> 02:00 BST at 01:00Z.
    pytest.param(
        "Europe/London", "30 1 * * *", z(2024, 3, 30, 12),
        # 01:30 skipped -> 02:00 BST = 01:00Z; Apr 1 01:30 BST = 00:30Z
        [z(2024, 3, 31, 1), z(2024, 4, 1, 0, 30)],
        id="london-fixed-in-gap",
    ),
    pytest.param(
        "Europe/London", "*/20 * * * *", z(2024, 3, 31, 0, 30),
        # 00:40 GMT = 00:40Z, 01:00-01:40 skipped, 02:00 BST = 01:00Z, 02:20 BST = 01:20Z
        [z(2024, 3, 31, 0, 40), z(2024, 3, 31, 1), z(2024, 3, 31, 1, 20)],
        id="london-every-20-across-gap",
    ),
    # Fall 2024-10-27: 02:00 BST -> 01:00 GMT at 01:00Z; 01:00-01:59 twice.
    pytest.param(
        "Europe/London", "30 1 * * *", z(2024, 10, 26, 12),
        # 01:30 BST = 00:30Z only; Oct 28 01:30 GMT = 01:30Z
        [z(2024, 10, 27, 0, 30), z(2024, 10, 28, 1, 30)],
        id="london-fixed-in-overlap-first-only",
    ),
    pytest.param(
        "Europe/London", "0 * * * *", z(2024, 10, 26, 23, 30),
        # 01:00 BST = 00:00Z, 01:00 GMT = 01:00Z, 02:00 GMT = 02:00Z
        [z(2024, 10, 27, 0), z(2024, 10, 27, 1), z(2024, 10, 27, 2)],
        id="london-hourly-across-overlap",
    ),
    # ---- cronie's thresholds for other time changes (historical tzdata) ----
    # Pacific/Apia skipped 2011-12-30: 2011-12-29 24:00 -10 -> 2011-12-31 00:00 +14 at
    # 2011-12-30 10:00Z.  A 24 h jump is >= 3 h: cronie treats it as a clock correction,
    # so jobs of the skipped day do not run at all.
    pytest.param(
        "Pacific/Apia", "0 12 * * *", z(2011, 12, 29),
        # Dec 29 12:00 -10 = 22:00Z; Dec 30 skipped; Dec 31 12:00 +14 = Dec 30 22:00Z
        [z(2011, 12, 29, 22), z(2011, 12, 30, 22)],
        id="apia-large-gap-skipped",
    ),
    # Pacific/Kwajalein 1969-09-30 13:00Z: +11 -> -12, so Oct 1 00:00 +11 becomes
    # Sep 30 01:00 -12 and Sep 30 01:00-23:59 occurs twice (23 h > 3 h): clock correction,
    # fixed-time jobs run in both passes.
    pytest.param(
        "Pacific/Kwajalein", "0 12 * * *", z(1969, 9, 29),
        # Sep 29 12:00 +11 = 01:00Z, Sep 30 12:00 +11 = Sep 30 01:00Z,
        # Sep 30 12:00 -12 = Oct 1 00:00Z, Oct 1 12:00 -12 = Oct 2 00:00Z
        [z(1969, 9, 29, 1), z(1969, 9, 30, 1), z(1969, 10, 1, 0), z(1969, 10, 2, 0)],
        id="kwajalein-large-overlap-fixed-twice",
    ),
    # America/Bahia_Banderas 1922-01-01 07:00Z: LMT -07:01 -> -07:00, wall 1921-12-31 23:59
    # is skipped (1 minute < 5): cronie replays missed minutes for all jobs, so even a
    # wildcard job fires at the jump.
    pytest.param(
        "America/Bahia_Banderas", "59 * * * *", z(1922, 1, 1, 5),
        # 22:59 -07:01 = 06:00Z, 23:59 skipped -> 07:00Z, Jan 1 00:59 -07:00 = 07:59Z
        [z(1922, 1, 1, 6), z(1922, 1, 1, 7), z(1922, 1, 1, 7, 59)],
        id="bahia-banderas-small-gap-wildcard-fires",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("timezone", "expression", "after", "expected"), DST_CASES)
def test_dst_transitions(timezone: str, expression: str, after: datetime, expected: list[datetime]) -> None:
    schedule = CronSchedule.parse(expression, timezone)
    assert take(schedule, after, len(expected)) == expected


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        # "0 * * * *" in New York, fall 2024-11-03.  01:00 first pass (EDT, fold=0) is 05:00Z:
        # the next fire is the second 01:00 (EST) = 06:00Z.
        (datetime(2024, 11, 3, 1, 0, tzinfo=NEW_YORK, fold=0), z(2024, 11, 3, 6)),
        # 01:00 second pass (EST, fold=1) = 06:00Z: next is 02:00 EST = 07:00Z.
        (datetime(2024, 11, 3, 1, 0, tzinfo=NEW_YORK, fold=1), z(2024, 11, 3, 7)),
        # 01:59:59 EDT (05:59:59Z): next is 01:00 EST = 06:00Z, not 02:00.
        (datetime(2024, 11, 3, 1, 59, 59, tzinfo=NEW_YORK, fold=0), z(2024, 11, 3, 6)),
        # 01:30 EST (06:30Z): next 02:00 EST = 07:00Z.
        (datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK, fold=1), z(2024, 11, 3, 7)),
    ],
)
def test_next_after_inside_repeated_hour(local: datetime, expected: datetime) -> None:
    assert CronSchedule.parse("0 * * * *", "America/New_York").next_after(local) == expected


def test_fixed_job_asked_during_second_pass_waits_for_next_day() -> None:
    schedule = CronSchedule.parse("30 1 * * *", "America/New_York")
    # 01:10 EST on 2024-11-03 (06:10Z): 01:30 already ran in the EDT pass -> Nov 4 01:30 EST = 06:30Z
    assert schedule.next_after(datetime(2024, 11, 3, 1, 10, tzinfo=NEW_YORK, fold=1)) == z(2024, 11, 4, 6, 30)
    # 01:10 EDT (05:10Z): 01:30 EDT = 05:30Z is still ahead
    assert schedule.next_after(datetime(2024, 11, 3, 1, 10, tzinfo=NEW_YORK, fold=0)) == z(2024, 11, 3, 5, 30)


def test_gap_job_asked_just_before_and_at_the_jump() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "America/New_York")
    # 01:59:59 EST = 06:59:59Z -> jump instant 07:00Z
    assert schedule.next_after(z(2024, 3, 10, 6, 59, 59)) == z(2024, 3, 10, 7)
    # exactly at the jump instant -> next day 02:30 EDT = 06:30Z
    assert schedule.next_after(z(2024, 3, 10, 7)) == z(2024, 3, 11, 6, 30)


# ---------------------------------------------------------------------------
# Long runs: monotonic, no duplicates, expected counts.
# ---------------------------------------------------------------------------


def collect(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    out: list[datetime] = []
    for instant in schedule.iter_after(start):
        if instant > end:
            return out
        out.append(instant)
    raise AssertionError("unreachable")  # pragma: no cover


def test_every_30_minutes_for_a_year_in_new_york_is_evenly_spaced() -> None:
    # A wildcard job follows real elapsed time: New York offsets are whole hours, so
    # "*/30" fires every 30 real minutes all year, 48 per 24 h, 366 days in 2024.
    start, end = z(2024, 1, 1, 5), z(2025, 1, 1, 5)  # 2024-01-01 00:00 EST .. 2025-01-01 00:00 EST
    fires = collect(CronSchedule.parse("*/30 * * * *", "America/New_York"), start, end)
    assert len(fires) == 366 * 48
    assert all(b - a == timedelta(minutes=30) for a, b in itertools.pairwise(fires))
    assert fires[0] == z(2024, 1, 1, 5, 30)
    assert fires[-1] == end


def test_every_15_minutes_for_a_year_in_lord_howe_is_evenly_spaced() -> None:
    # +10:30 / +11:00 keep quarter hours aligned, so a wildcard "*/15" fires every
    # 15 real minutes through both 30-minute transitions.
    start, end = z(2024, 1, 1), z(2025, 1, 1)
    fires = collect(CronSchedule.parse("*/15 * * * *", "Australia/Lord_Howe"), start, end)
    assert len(fires) == 366 * 96
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(fires))


@pytest.mark.parametrize(
    ("timezone", "expression"),
    [
        ("America/New_York", "30 2 * * *"),
        ("America/New_York", "30 1 * * *"),
        ("Australia/Lord_Howe", "15 2 * * *"),
        ("Australia/Lord_Howe", "45 1 * * *"),
        ("America/Santiago", "@daily"),
        ("America/Santiago", "30 23 * * *"),
    ],
)
def test_fixed_daily_job_runs_exactly_once_per_local_day_for_a_year(timezone: str, expression: str) -> None:
    # cron(8): a fixed-time daily job runs once every day, gap or overlap.
    zone = ZoneInfo(timezone)
    start = datetime(2024, 1, 1, tzinfo=zone)
    end = datetime(2025, 1, 1, tzinfo=zone)
    fires = collect(CronSchedule.parse(expression, timezone), start, end)
    assert fires == sorted(set(fires))
    assert all(f.tzinfo is UTC for f in fires)
    # The jump instant of a skipped midnight is still that day (01:00 local).
    days = [f.astimezone(zone).date() for f in fires]
    assert len(days) == 366
    assert len(set(days)) == 366


def test_iter_after_over_a_year_hourly_new_york_counts_dst() -> None:
    # 2024 in New York: 366 * 24 local hours, minus the skipped 02:00 (Mar 10),
    # plus the repeated 01:00 (Nov 3) = 8784 fires, each strictly after the previous.
    start, end = z(2024, 1, 1, 5), z(2025, 1, 1, 5)
    fires = collect(CronSchedule.parse("0 * * * *", "America/New_York"), start, end)
    assert len(fires) == 366 * 24
    assert all(b > a for a, b in itertools.pairwise(fires))
    assert len(set(fires)) == len(fires)


# ---------------------------------------------------------------------------
# Input handling, result type, pickling.
# ---------------------------------------------------------------------------


def test_result_is_aware_utc_and_input_zone_is_irrelevant() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "Europe/Paris")
    # 2024-05-01 08:00 in Tokyo (+9) = 2024-04-30 23:00Z; next 09:00 CEST (+2) = 2024-05-01 07:00Z
    result = schedule.next_after(datetime(2024, 5, 1, 8, tzinfo=ZoneInfo("Asia/Tokyo")))
    assert result == z(2024, 5, 1, 7)
    assert result.tzinfo is UTC
    assert schedule.next_after(z(2024, 4, 30, 23)) == result


def test_strictly_after_with_sub_minute_precision() -> None:
    schedule = CronSchedule.parse("*/5 * * * *")
    assert schedule.next_after(z(2024, 5, 1, 10, 4, 59) + timedelta(microseconds=999_999)) == z(2024, 5, 1, 10, 5)
    assert schedule.next_after(z(2024, 5, 1, 10, 5)) == z(2024, 5, 1, 10, 10)
    assert schedule.next_after(z(2024, 5, 1, 10, 5) + timedelta(microseconds=1)) == z(2024, 5, 1, 10, 10)


def test_naive_datetime_rejected() -> None:
    schedule = CronSchedule.parse("* * * * *")
    naive = datetime(2024, 5, 1, 10)
    with pytest.raises(ValueError, match="naive"):
        schedule.next_after(naive)
    with pytest.raises(ValueError, match="naive"):
        schedule.iter_after(naive)
    with pytest.raises(ValueError, match="naive"):
        schedule.fires_at(naive)


def test_out_of_range_instants_raise_value_error() -> None:
    # the next 1 January midnight after mid-9999 would be in year 10000
    with pytest.raises(ValueError, match="9999"):
        CronSchedule.parse("@yearly").next_after(z(9999, 6, 1))
    with pytest.raises(ValueError, match="range"):
        CronSchedule.parse("* * * * *").next_after(datetime.max.replace(tzinfo=UTC))


def test_fires_at() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Australia/Sydney")
    # Apr 7 2024 02:30 AEDT = Apr 6 15:30Z fires; the repeated 02:30 AEST = 16:30Z does not.
    assert schedule.fires_at(z(2024, 4, 6, 15, 30))
    assert not schedule.fires_at(z(2024, 4, 6, 16, 30))
    # Oct 6 2024 02:30 is skipped: fires at the jump, 03:00 AEDT = Oct 5 16:00Z.
    assert schedule.fires_at(z(2024, 10, 5, 16))
    assert not schedule.fires_at(z(2024, 10, 5, 16, 30))


def test_pickle_round_trip_keeps_only_expression_and_timezone() -> None:
    schedule = CronSchedule.parse("  0 2 * * *  ", "America/New_York")
    data = pickle.dumps(schedule)
    assert b"_Compiled" not in data
    assert b"ZoneInfo" not in data
    clone = pickle.loads(data)
    assert clone == schedule
    assert hash(clone) == hash(schedule)
    assert (clone.expression, clone.timezone) == ("0 2 * * *", "America/New_York")
    assert clone.next_after(z(2024, 3, 9, 12)) == schedule.next_after(z(2024, 3, 9, 12)) == z(2024, 3, 10, 7)
    assert copy.deepcopy(schedule) == schedule
    assert copy.copy(schedule).next_after(z(2024, 5, 1)) == z(2024, 5, 1, 6)


def test_equality_uses_expression_and_timezone() -> None:
    assert CronSchedule.parse("0 2 * * *") == CronSchedule("0 2 * * *", "UTC")
    assert CronSchedule.parse("0 2 * * *") != CronSchedule.parse("0 2 * * *", "Europe/Paris")
    assert CronSchedule.parse("\t@daily\n").expression == "@daily"
    assert "_compiled" not in repr(CronSchedule.parse("@daily"))


def test_is_fixed_time() -> None:
    assert CronSchedule.parse("0 2 * * *").is_fixed_time
    assert CronSchedule.parse("@daily").is_fixed_time
    assert CronSchedule.parse("0 0-23 * * *").is_fixed_time
    assert not CronSchedule.parse("@hourly").is_fixed_time
    assert not CronSchedule.parse("*/5 2 * * *").is_fixed_time
    assert not CronSchedule.parse("0 */2 * * *").is_fixed_time


def test_nicknames_mapping() -> None:
    assert dict(NICKNAMES) == {
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    }
    with pytest.raises(TypeError):
        NICKNAMES["@reboot"] = "x"  # type: ignore[index]


# ---------------------------------------------------------------------------
# Rejections.
# ---------------------------------------------------------------------------

REJECTED_SCHEDULES = [
    ("", "empty"),
    ("   ", "empty"),
    ("* * * *", "expected 5"),
    ("* * * * * * * *", "expected 5"),
    ("0 * * * * *", "seconds (6-field)"),
    ("0 0 12 * * ? 2024", "Quartz"),
    ("60 * * * *", "minute 60 is out of range 0-59"),
    ("* 24 * * *", "hour 24 is out of range 0-23"),
    ("* * 0 * *", "day-of-month 0 is out of range 1-31"),
    ("* * 32 * *", "day-of-month 32 is out of range 1-31"),
    ("* * * 13 *", "month 13 is out of range 1-12"),
    ("* * * * 8", "day-of-week 8 is out of range 0-7"),
    ("5-1 * * * *", "reversed"),
    ("* * * * fri-sun", "reversed"),
    ("* * * dec-jan *", "reversed"),
    ("*/0 * * * *", "step 0"),
    ("0-10/0 * * * *", "step 0"),
    ("*/60 * * * *", "larger than the range"),
    ("* */24 * * *", "larger than the range"),
    ("0-10/20 * * * *", "larger than the range"),
    ("5/10 * * * *", "'5-59/10'"),
    ("0 0 ? * mon", "Quartz"),
    ("0 0 L * *", "Quartz"),
    ("0 0 LW * *", "Quartz"),
    ("0 0 15W * *", "Quartz"),
    ("0 0 * * 5L", "Quartz"),
    ("0 0 * * MON#2", "Quartz"),
    ("1,,2 * * * *", "empty list element"),
    ("1, * * * *", "empty list element"),
    (",1 * * * *", "empty list element"),
    ("a * * * *", "not a number"),
    ("jan * * * *", "not a number"),
    ("0 0 \uff13 * *", "not a number"),  # FULLWIDTH DIGIT THREE
    ("* * * foo *", "three-letter month name"),
    ("* * * * monday", "three-letter weekday name"),
    ("* * * */jan *", "step 'jan' is not a number"),
    ("*5 * * * *", "unexpected text after '*'"),
    ("1-2-3 * * * *", "not a number"),
    ("*/2/3 * * * *", "more than one '/'"),
    ("-5 * * * *", "missing number"),
    ("0~30 * * * *", "random"),
    ("~ * * * *", "random"),
    ("0 0 30 2 *", "day-of-month 30 never occurs in February"),
    ("0 0 30,31 feb *", "day-of-month 30,31 never occurs in February"),
    ("0 0 31 4,6,9,11 *", "day-of-month 31 never occurs in April, June, September or November"),
    ("0 0 */2 * 1", "read differently"),
    ("0 0 1 * */2", "read differently"),
    ("0 0 *,15 * mon", "read differently"),
    ("0 0 */2 * */3", "read differently"),
    ("0 0 */1 * 1-5", "read differently"),
    ("@reboot", "not a time schedule"),
    ("@every 5m", "unknown nickname"),
    ("@fortnightly", "unknown nickname"),
    ("@DAILY", "lower case"),
    ("@daily 5", "whole expression"),
]


@pytest.mark.parametrize(("expression", "phrase"), REJECTED_SCHEDULES)
def test_rejected_schedules(expression: str, phrase: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        CronSchedule.parse(expression)
    assert caught.value.field == "schedule"
    assert phrase in caught.value.reason


@pytest.mark.parametrize(
    ("expression", "field_name"),
    [
        ("60 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 32 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day-of-week"),
        ("*/0 * * * *", "minute"),
        ("5-1 * * * *", "minute"),
    ],
)
def test_rejection_names_the_field(expression: str, field_name: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        CronSchedule.parse(expression)
    assert caught.value.reason.startswith(f"{field_name} field")


def test_ambiguous_day_fields_message_explains_the_fix() -> None:
    with pytest.raises(InvalidSchedule) as caught:
        CronSchedule.parse("0 0 */2 * mon")
    reason = caught.value.reason
    assert "both" in reason
    assert "either" in reason
    assert "'1-31/2'" in reason


@pytest.mark.parametrize(
    ("timezone", "phrase"),
    [
        ("Mars/Olympus_Mons", "unknown time zone"),
        ("", "empty"),
        (" UTC", "spaces"),
        ("localtime", "depends on the host"),
        ("../../etc/passwd", "unknown time zone"),
        ("America", "unknown time zone"),
        ("america/new_york", "unknown time zone"),
    ],
)
def test_rejected_time_zones(timezone: str, phrase: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        CronSchedule.parse("0 0 * * *", timezone)
    assert caught.value.field == "timezone"
    assert phrase in caught.value.reason
    with pytest.raises(InvalidSchedule):
        validate_timezone(timezone)


def test_validate_timezone_returns_zone() -> None:
    assert validate_timezone("Europe/Paris") == ZoneInfo("Europe/Paris")
    assert validate_timezone("UTC") == ZoneInfo("UTC")


def test_non_string_arguments_rejected() -> None:
    with pytest.raises(InvalidSchedule) as caught:
        CronSchedule(5, "UTC")  # type: ignore[arg-type]
    assert caught.value.field == "schedule"
    with pytest.raises(InvalidSchedule) as caught:
        CronSchedule("* * * * *", None)  # type: ignore[arg-type]
    assert caught.value.field == "timezone"


def test_invalid_schedule_is_a_value_error_and_pickles() -> None:
    with pytest.raises(ValueError, match="invalid schedule: expression is empty"):
        CronSchedule.parse("")
    error = InvalidSchedule("timezone", "unknown time zone 'X'")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.field, clone.reason) == ("timezone", "unknown time zone 'X'")


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # 0-7 covers every day once (Sunday twice)
        ("0 0 * * 0-7", z(2024, 5, 1), z(2024, 5, 2)),
        # '1,*' does not start with '*' but day-of-week is '*': every day either way
        ("0 0 1,* * *", z(2024, 5, 1), z(2024, 5, 2)),
        # OR: Feb 29 or any Monday in February; 2025-02-03 is the first Monday of Feb 2025
        ("0 0 29 2 mon", z(2024, 3, 1), z(2025, 2, 3)),
    ],
)
def test_accepted_edge_cases(expression: str, after: datetime, expected: datetime) -> None:
    assert CronSchedule.parse(expression).next_after(after) == expected
