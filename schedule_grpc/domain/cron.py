"""Five-field crontab(5) schedules evaluated in an IANA time zone.

Syntax (crontab(5) as parsed by cronie's ``src/entry.c``)
--------------------------------------------------------
``minute hour day-of-month month day-of-week`` with minute 0-59, hour 0-23,
day-of-month 1-31, month 1-12 or ``jan``-``dec``, day-of-week 0-7 or
``sun``-``sat`` (0 and 7 are Sunday; names are case-insensitive three-letter
abbreviations).  Each field is a comma-separated list of ``*``, ``*/step``,
``N``, ``N-M`` or ``N-M/step``; names may be used wherever a number may (also
in ranges), never as a step.  Nicknames (lower case only, as in cronie):
``@yearly @annually @monthly @weekly @daily @midnight @hourly``.

Rejected (``InvalidSchedule``), besides plain syntax errors and out-of-range
values, because cronie rejects them or because cron implementations read them
differently:

* ``N/step`` without a range end: cronie (and ISC/Vixie cron) reject it, other
  libraries read it as ``N-max/step``;
* reversed ranges such as ``5-1``: old cronie rejects, new cronie silently
  matches nothing (or turns ``x-0`` into ``x-7`` in day-of-week), others wrap;
* step 0, and a step larger than its range (``*/60`` in minutes: cronie 1.5.5
  to 1.6 reject it, later versions only warn; it can only match the start);
* ``~`` random ranges (cronie extension, not deterministic), Quartz ``? L W #``,
  6/7-field (seconds, year) expressions, ``@reboot`` and unknown ``@words``;
* a day-of-month or day-of-week that contains ``*`` but is not exactly ``*``
  (``*/2``, ``*,5``) while the other day field is not exactly ``*``: cronie
  ANDs the two fields whenever either *starts* with ``*``, crontab(5) says
  "contains", and other implementations OR them;
* expressions that can never fire (``0 0 30 2 *``).

Day matching: if day-of-month or day-of-week starts with ``*`` a day must
match both fields, otherwise it must match either (cronie ``find_jobs``).

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
import re
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "NICKNAMES",
    "CronSchedule",
    "InvalidSchedule",
    "validate_timezone",
]


class InvalidSchedule(ValueError):
    """Raised for a schedule or time zone that is rejected."""

    field: str
    reason: str

    def __init__(self, field: str, reason: str) -> None:
        # args == (field, reason) keeps the exception picklable.
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid {self.field}: {self.reason}"


NICKNAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    }
)

_MINUTE: Final = timedelta(minutes=1)
# cronie's wake-up classification of a clock change (src/cron.c): a forward
# jump of G minutes gives timeDiff = G + 1, a backward one of L minutes
# timeDiff = 1 - L; "small" is 0 < timeDiff <= 5, "medium" <= 180 and
# "large" is |timeDiff| > 180.
_SMALL_GAP: Final = timedelta(minutes=5)
_LARGE_GAP: Final = timedelta(minutes=180)
_LARGE_OVERLAP: Final = timedelta(minutes=181)
# With the rejections above a matching day always occurs within 8 years
# (29 February around a non-leap 2100); this only bounds the loop.
_SEARCH_YEARS: Final = 30

_MONTH_NAMES: Final = (
    "jan", "feb", "mar", "apr", "may", "jun",
    "jul", "aug", "sep", "oct", "nov", "dec",
)  # fmt: skip
_DOW_NAMES: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_TITLES: Final = (
    "", "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
)  # fmt: skip
# Longest possible month (February may have 29 days).
_MAX_DAYS: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_QUARTZ_TOKEN: Final = re.compile(r"(?i)\d*L|LW|L-\d+|\d+W|[a-z]{3}L")
_FORMAT_HINT: Final = "use the 5 crontab fields: minute hour day-of-month month day-of-week"


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i


_FIELDS: Final = (
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day-of-month", 1, 31),
    _FieldSpec("month", 1, 12, _MONTH_NAMES),
    _FieldSpec("day-of-week", 0, 7, _DOW_NAMES),
)


def _reject(reason: str) -> InvalidSchedule:
    return InvalidSchedule("schedule", reason)


def _parse_value(text: str, spec: _FieldSpec, element: str) -> int:
    where = f"{spec.name} field {element!r}"
    if text == "":
        raise _reject(f"{where}: missing number")
    if text.isascii() and text.isdigit():
        value = int(text)
    elif text.lower() in spec.names:
        value = spec.names.index(text.lower()) + spec.low
    else:
        if _QUARTZ_TOKEN.fullmatch(text):
            raise _reject(f"{where}: 'L' and 'W' are Quartz syntax, which cron does not support")
        if spec.names:
            kind = "month" if spec.name == "month" else "weekday"
            raise _reject(
                f"{where}: {text!r} is not a number or a three-letter {kind} name ({spec.names[0]}-{spec.names[-1]})"
            )
        raise _reject(f"{where}: {text!r} is not a number")
    if not spec.low <= value <= spec.high:
        raise _reject(f"{where}: {spec.name} {value} is out of range {spec.low}-{spec.high}")
    return value


def _parse_step(text: str, spec: _FieldSpec, element: str) -> int:
    where = f"{spec.name} field {element!r}"
    if not (text.isascii() and text.isdigit()):
        raise _reject(f"{where}: step {text!r} is not a number")
    step = int(text)
    if step == 0:
        raise _reject(f"{where}: step 0 is invalid, the step must be at least 1")
    return step


def _parse_element(element: str, spec: _FieldSpec) -> range:
    where = f"{spec.name} field {element!r}"
    base, slash, step_text = element.partition("/")
    step = _parse_step(step_text, spec, element) if slash else 1
    if base == "*":
        low, high = spec.low, spec.high
    elif "-" in base:
        first, _, last = base.partition("-")
        low = _parse_value(first, spec, element)
        high = _parse_value(last, spec, element)
        if low > high:
            raise _reject(
                f"{where}: range {low}-{high} is reversed; cron implementations "
                "disagree on reversed ranges (rejected, empty or wrapped around), "
                "so write the first value first or use a list"
            )
    else:
        value = _parse_value(base, spec, element)
        if slash:
            raise _reject(
                f"{where}: 'start/step' without a range end is rejected by "
                "cronie and ISC cron while other implementations read it as "
                f"'{base}-{spec.high}/{step}'; write that range explicitly"
            )
        return range(value, value + 1)
    if step > 1 and step > high - low:
        raise _reject(
            f"{where}: step {step} is larger than the range {low}-{high}, so it "
            f"would only ever match {low} (some cron versions reject it); "
            f"write {low} instead"
        )
    return range(low, high + 1, step)


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    where = f"{spec.name} field {text!r}"
    if "?" in text:
        raise _reject(f"{where}: '?' is Quartz syntax, which cron does not support; use '*'")
    if "#" in text:
        raise _reject(f"{where}: '#' (n-th weekday of the month) is Quartz syntax, which cron does not support")
    if "~" in text:
        raise _reject(
            f"{where}: '~' random ranges (a cronie extension) are not supported because they are not deterministic"
        )
    values: set[int] = set()
    for element in text.split(","):
        if element == "":
            raise _reject(f"{where}: empty list element")
        if element.count("/") > 1:
            raise _reject(f"{where}: more than one '/' in {element!r}")
        if element.startswith("*") and element != "*" and element[1] != "/":
            raise _reject(f"{where}: unexpected text after '*' in {element!r}")
        values.update(_parse_element(element, spec))
    return frozenset(values)


def _expand_nickname(word: str, rest: list[str]) -> list[str]:
    if word in NICKNAMES:
        if rest:
            raise _reject(f"nickname {word} must be the whole expression")
        return NICKNAMES[word].split()
    if word.lower() in NICKNAMES:
        raise _reject(f"nicknames are lower case in cron: write {word.lower()!r}, not {word!r}")
    if word.lower() == "@reboot":
        raise _reject("@reboot runs once when the cron daemon starts; it is not a time schedule and is not supported")
    raise _reject(f"unknown nickname {word!r}; supported nicknames are " + ", ".join(NICKNAMES))


def _is_star_like(text: str) -> bool:
    return "*" in text and text != "*"


def _month_list(months: list[int]) -> str:
    names = [_MONTH_TITLES[m] for m in months]
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def validate_timezone(name: str) -> ZoneInfo:
    """Return the ZoneInfo for an IANA name or raise InvalidSchedule("timezone")."""
    if not isinstance(name, str) or name.strip() == "":
        raise InvalidSchedule("timezone", "time zone is empty")
    if name != name.strip():
        raise InvalidSchedule("timezone", f"time zone {name!r} has leading or trailing spaces")
    if name == "localtime":
        raise InvalidSchedule(
            "timezone",
            "'localtime' depends on the host; use an IANA name such as 'Europe/Paris'",
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(
            "timezone",
            f"unknown time zone {name!r}; use an IANA name such as 'America/New_York' or 'UTC'",
        ) from None


@dataclass(frozen=True, slots=True)
class _Compiled:
    minutes: tuple[int, ...]  # sorted
    hours: tuple[int, ...]  # sorted
    months: tuple[int, ...]  # sorted
    dom: tuple[bool, ...]  # index 1..31
    dow: tuple[bool, ...]  # index 0..6, 0 = Sunday
    day_and: bool
    wildcard: bool
    zone: ZoneInfo


@lru_cache(maxsize=16384)
def _compile(expression: str, timezone: str) -> _Compiled:
    if expression == "":
        raise _reject("expression is empty")
    parts = expression.split()
    if parts[0].startswith("@"):
        parts = _expand_nickname(parts[0], parts[1:])
    elif len(parts) != 5:
        if len(parts) in (6, 7):
            raise _reject(
                f"got {len(parts)} fields; seconds (6-field) and Quartz-style "
                f"(6 or 7 fields) expressions are not supported, {_FORMAT_HINT}"
            )
        raise _reject(f"got {len(parts)} fields, expected 5; {_FORMAT_HINT}")
    minute_f, hour_f, dom_f, _month_f, dow_f = parts
    minutes, hours, doms, months, dows = (_parse_field(text, spec) for text, spec in zip(parts, _FIELDS, strict=True))
    for text, other, name, other_name in (
        (dom_f, dow_f, "day-of-month", "day-of-week"),
        (dow_f, dom_f, "day-of-week", "day-of-month"),
    ):
        if _is_star_like(text) and other != "*":
            raise _reject(
                f"{name} {text!r} combined with {other_name} {other!r} is "
                "read differently by cron implementations: cronie runs only "
                f"on days matching both because {name} starts with '*', "
                "crontab(5) and other implementations run on days matching "
                f"either; write {name} without '*' (e.g. '1-31/2') to run on "
                "either, or make one of the two fields exactly '*'"
            )
    day_and = dom_f.startswith("*") or dow_f.startswith("*")
    month_list = sorted(months)
    if day_and and not any(d <= _MAX_DAYS[m] for m in month_list for d in doms):
        day_text = ",".join(str(d) for d in sorted(doms))
        raise _reject(f"the schedule never fires: day-of-month {day_text} never occurs in {_month_list(month_list)}")
    zone = validate_timezone(timezone)
    return _Compiled(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        months=tuple(month_list),
        dom=tuple(d in doms for d in range(32)),
        dow=tuple(d in dows or (d == 0 and 7 in dows) for d in range(7)),
        day_and=day_and,
        wildcard=minute_f.startswith("*") or hour_f.startswith("*"),
        zone=zone,
    )


def _match_from(c: _Compiled, start: datetime) -> datetime:
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


def _fires_for(c: _Compiled, t: datetime) -> tuple[tuple[datetime, ...], datetime | None]:
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


def _next_after(c: _Compiled, instant: datetime) -> datetime:
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
    _compiled: _Compiled = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise _reject("expression must be a string")
        if not isinstance(self.timezone, str):
            raise InvalidSchedule("timezone", "time zone must be a string")
        expression = self.expression.strip()
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "_compiled", _compile(expression, self.timezone))

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
