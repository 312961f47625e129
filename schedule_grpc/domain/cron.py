"""Five-field crontab(5) schedules evaluated in an IANA time zone: the next fire instants.

The syntax, and what is rejected, is described and parsed in ``cron_syntax.py``.

Daylight-saving rule implemented (cronie ``src/cron.c`` main loop, cron(8)
"Daylight Saving Time and other time changes")
------------------------------------------------------------------------------
A schedule is a *wildcard* job if its minute or hour field starts with ``*``
(cronie's ``MIN_STAR|HR_STAR``; ``@hourly`` counts as ``0 * * * *``), else a
*fixed-time* job.  Every local wall-clock minute matching the fields yields:

* a wall time that exists once: that instant;
* a wall time that exists twice (clock set back by L): a wildcard job fires at
  both instants; a fixed-time job only at the first, because cronie's
  "negative" branch runs only wildcard jobs until its virtual clock catches
  up.  If L > 181 min cronie's time difference is below -180 min, it treats the
  change as a clock correction and runs everything, so fixed-time jobs then
  fire at both instants too;
* a wall time skipped (clock set forward by G): the "jump instant" is the
  transition instant, i.e. the first instant after the gap.  If 5 <= G < 180
  min (cronie "medium" case, every real DST change) a fixed-time job fires at
  the jump instant and a wildcard job does not fire at all.  If G < 5 min
  (cronie "small" case: every missed minute is replayed) both kinds fire at
  the jump instant.  If G >= 180 min (cronie "large" case: clock correction,
  the new time is used immediately) neither fires.

Several fire times that land on the same instant (e.g. ``0,30 2 * * *`` in a
skipped 02:00-03:00 hour, or ``0 2,3 * * *``) are reported once; cronie may
start such a job once per skipped minute, seconds apart.  Known deliberate
differences from a running cronie: cronie evaluates ``CRON_TZ`` jobs with the
system zone's DST handling (documented as imperfect), whereas we behave as if
cron's own zone were the schedule's zone; and cronie only notices an offset
change when ``tm_isdst`` flips, whereas every tzdata offset change is treated
as a time change here (e.g. Samoa skipping 2011-12-30 is a "large" gap).
Fire instants are the start of the minute (cronie starts jobs a moment later).
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from schedule_grpc.domain.cron_syntax import (
    NICKNAMES,
    CompiledSchedule,
    InvalidSchedule,
    compile_schedule,
    reject,
    validate_timezone,
)

__all__ = [
    "NICKNAMES",
    "CronSchedule",
    "InvalidSchedule",
    "validate_timezone",
]

_MINUTE: Final = timedelta(minutes=1)
# cronie's wake-up classification of a clock change (src/cron.c): a forward
# jump of G minutes gives timeDiff = G + 1, a backward one of L minutes
# timeDiff = 1 - L; "small" is 0 < timeDiff <= 5, "medium" <= 180 and
# "large" is |timeDiff| > 180.
_SMALL_GAP: Final = timedelta(minutes=5)
_LARGE_GAP: Final = timedelta(minutes=180)
_LARGE_OVERLAP: Final = timedelta(minutes=181)
# With the rejections of cron_syntax a matching day always occurs within 8 years
# (29 February around a non-leap 2100); this only bounds the loop.
_SEARCH_YEARS: Final = 30


def _match_from(c: CompiledSchedule, start: datetime) -> datetime:
    """First naive local minute >= ``start`` (minute-aligned) matching the fields."""
    year, month, day = start.year, start.month, start.day
    hour, minute = start.hour, start.minute
    months, hours, minutes = c.months, c.hours, c.minutes
    dom, dow, day_and = c.dom, c.dow, c.day_and
    last_year = min(year + _SEARCH_YEARS, 9999)
    while year <= last_year:
        i = bisect_left(months, month)
        if i == len(months):
            year, month, day, hour, minute = year + 1, months[0], 1, 0, 0
            continue
        if months[i] != month:
            month, day, hour, minute = months[i], 1, 0, 0
        first_weekday, ndays = calendar.monthrange(year, month)
        while day <= ndays:
            # calendar: Monday == 0; cron: Sunday == 0.
            dom_ok = dom[day]
            dow_ok = dow[(first_weekday + day) % 7]
            if (dom_ok and dow_ok) if day_and else (dom_ok or dow_ok):
                for h in hours[bisect_left(hours, hour) :]:
                    j = bisect_left(minutes, minute if h == hour else 0)
                    if j < len(minutes):
                        return datetime(year, month, day, h, minutes[j])
            day, hour, minute = day + 1, 0, 0
        month, day, hour, minute = month + 1, 1, 0, 0
        if month > 12:
            year, month = year + 1, 1
    raise ValueError("no fire time before the end of year 9999")


def _offset(dt: datetime) -> timedelta:
    off = dt.utcoffset()
    if off is None:  # pragma: no cover - ZoneInfo always answers
        raise ValueError("time zone returned no UTC offset")
    return off


def _transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """First whole second in (before, after] (UTC) with the offset found at ``after``.

    ``before`` and ``after`` are whole seconds (local minute minus a UTC offset).
    """
    new = _offset(after.astimezone(zone))
    lo, hi = int(before.timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(datetime.fromtimestamp(mid, zone)) == new:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


_NO_FIRES: Final[tuple[datetime, ...]] = ()


def _fires_for(c: CompiledSchedule, t: datetime) -> tuple[tuple[datetime, ...], datetime | None]:
    """UTC fire instants for matching naive local minute ``t``.

    The second item, for a skipped wall time, is the first wall time after
    the gap (where a search for later matches may resume).
    """
    local = t.replace(tzinfo=c.zone)
    off0 = _offset(local)
    off1 = _offset(local.replace(fold=1))
    if off0 == off1:
        return ((t - off0).replace(tzinfo=UTC),), None
    if off0 > off1:  # repeated wall time: first pass (fold=0), second pass
        first = (t - off0).replace(tzinfo=UTC)
        if c.wildcard or off0 - off1 > _LARGE_OVERLAP:
            return (first, (t - off1).replace(tzinfo=UTC)), None
        return (first,), None
    # Skipped wall time: fold=0 maps past the transition, fold=1 before it.
    jump = _transition(c.zone, (t - off1).replace(tzinfo=UTC), (t - off0).replace(tzinfo=UTC))
    resume = (jump + off1).replace(tzinfo=None)
    if resume.second or resume.microsecond:
        resume = resume.replace(second=0, microsecond=0) + _MINUTE
    gap = off1 - off0
    if gap < _SMALL_GAP or (gap < _LARGE_GAP and not c.wildcard):
        return (jump,), resume
    return _NO_FIRES, resume


def _next_after(c: CompiledSchedule, instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("instant must be an aware datetime (naive datetime given)")
    try:
        now = instant.astimezone(UTC)
        local = now.astimezone(c.zone)
        wall = local.replace(tzinfo=None, second=0, microsecond=0, fold=0)
        best: datetime | None = None
        if local.fold == 0:
            off0 = _offset(local)
            overlap = off0 - _offset(local.replace(fold=1))
            if overlap > timedelta(0) and (c.wildcard or overlap > _LARGE_OVERLAP):
                # First pass of a repeated interval: second-pass instants of
                # wall times up to ``wall`` are still in the future.
                t = _match_from(c, wall - overlap)
                while best is None and t <= wall:
                    best = next((x for x in _fires_for(c, t)[0] if x > now), None)
                    t = _match_from(c, t + _MINUTE)
        t = _match_from(c, wall + _MINUTE)
        while True:
            fires, resume = _fires_for(c, t)
            for x in fires:
                if x > now:
                    return x if best is None or x < best else best
            nxt = t + _MINUTE
            if resume is not None and resume > nxt:
                nxt = resume
            t = _match_from(c, nxt)
    except OverflowError:
        raise ValueError("instant is outside the supported date range") from None


@dataclass(frozen=True)
class CronSchedule:
    """A validated crontab(5) expression bound to an IANA time zone.

    Only ``expression`` and ``timezone`` are state (equality, hashing and
    pickling use them); the compiled form is rebuilt from them and shared
    between equal schedules.
    """

    expression: str
    timezone: str
    _compiled: CompiledSchedule = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise reject("expression must be a string")
        if not isinstance(self.timezone, str):
            raise InvalidSchedule("timezone", "time zone must be a string")
        expression = self.expression.strip()
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "_compiled", compile_schedule(expression, self.timezone))

    def __reduce__(self) -> tuple[type[CronSchedule], tuple[str, str]]:
        return (type(self), (self.expression, self.timezone))

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        """Validate ``expression`` and ``timezone``; raise InvalidSchedule."""
        return cls(expression, timezone)

    @property
    def is_fixed_time(self) -> bool:
        """True unless the minute or hour field starts with '*' (cron(8) DST rules)."""
        return not self._compiled.wildcard

    def next_after(self, instant: datetime) -> datetime:
        """First fire instant strictly after ``instant`` (aware), in UTC."""
        return _next_after(self._compiled, instant)

    def iter_after(self, instant: datetime) -> Iterator[datetime]:
        """Successive fire instants (UTC), each strictly after the previous."""
        first = _next_after(self._compiled, instant)
        return self._iterate(first)

    def _iterate(self, current: datetime) -> Iterator[datetime]:
        compiled = self._compiled
        while True:
            yield current
            current = _next_after(compiled, current)

    def fires_at(self, instant: datetime) -> bool:
        """Whether the schedule fires exactly at ``instant`` (aware)."""
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError("instant must be an aware datetime (naive datetime given)")
        return _next_after(self._compiled, instant - timedelta(microseconds=1)) == instant
