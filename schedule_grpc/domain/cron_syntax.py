"""Five-field crontab(5) schedules: the syntax, parsed and checked into the sets of values each field matches.


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

Evaluation (the next fire instant, daylight-saving changes) is in ``cron.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


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


def reject(reason: str) -> InvalidSchedule:
    """The error for a rejected expression (field ``schedule``)."""
    return InvalidSchedule("schedule", reason)


def _parse_value(text: str, spec: _FieldSpec, element: str) -> int:
    where = f"{spec.name} field {element!r}"
    if text == "":
        raise reject(f"{where}: missing number")
    if text.isascii() and text.isdigit():
        value = int(text)
    elif text.lower() in spec.names:
        value = spec.names.index(text.lower()) + spec.low
    else:
        if _QUARTZ_TOKEN.fullmatch(text):
            raise reject(f"{where}: 'L' and 'W' are Quartz syntax, which cron does not support")
        if spec.names:
            kind = "month" if spec.name == "month" else "weekday"
            raise reject(
                f"{where}: {text!r} is not a number or a three-letter {kind} name ({spec.names[0]}-{spec.names[-1]})"
            )
        raise reject(f"{where}: {text!r} is not a number")
    if not spec.low <= value <= spec.high:
        raise reject(f"{where}: {spec.name} {value} is out of range {spec.low}-{spec.high}")
    return value


def _parse_step(text: str, spec: _FieldSpec, element: str) -> int:
    where = f"{spec.name} field {element!r}"
    if not (text.isascii() and text.isdigit()):
        raise reject(f"{where}: step {text!r} is not a number")
    step = int(text)
    if step == 0:
        raise reject(f"{where}: step 0 is invalid, the step must be at least 1")
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
            raise reject(
                f"{where}: range {low}-{high} is reversed; cron implementations "
                "disagree on reversed ranges (rejected, empty or wrapped around), "
                "so write the first value first or use a list"
            )
    else:
        value = _parse_value(base, spec, element)
        if slash:
            raise reject(
                f"{where}: 'start/step' without a range end is rejected by "
                "cronie and ISC cron while other implementations read it as "
                f"'{base}-{spec.high}/{step}'; write that range explicitly"
            )
        return range(value, value + 1)
    if step > 1 and step > high - low:
        raise reject(
            f"{where}: step {step} is larger than the range {low}-{high}, so it "
            f"would only ever match {low} (some cron versions reject it); "
            f"write {low} instead"
        )
    return range(low, high + 1, step)


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    where = f"{spec.name} field {text!r}"
    if "?" in text:
        raise reject(f"{where}: '?' is Quartz syntax, which cron does not support; use '*'")
    if "#" in text:
        raise reject(f"{where}: '#' (n-th weekday of the month) is Quartz syntax, which cron does not support")
    if "~" in text:
        raise reject(
            f"{where}: '~' random ranges (a cronie extension) are not supported because they are not deterministic"
        )
    values: set[int] = set()
    for element in text.split(","):
        if element == "":
            raise reject(f"{where}: empty list element")
        if element.count("/") > 1:
            raise reject(f"{where}: more than one '/' in {element!r}")
        if element.startswith("*") and element != "*" and element[1] != "/":
            raise reject(f"{where}: unexpected text after '*' in {element!r}")
        values.update(_parse_element(element, spec))
    return frozenset(values)


def _expand_nickname(word: str, rest: list[str]) -> list[str]:
    if word in NICKNAMES:
        if rest:
            raise reject(f"nickname {word} must be the whole expression")
        return NICKNAMES[word].split()
    if word.lower() in NICKNAMES:
        raise reject(f"nicknames are lower case in cron: write {word.lower()!r}, not {word!r}")
    if word.lower() == "@reboot":
        raise reject("@reboot runs once when the cron daemon starts; it is not a time schedule and is not supported")
    raise reject(f"unknown nickname {word!r}; supported nicknames are " + ", ".join(NICKNAMES))


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
class CompiledSchedule:
    """What an expression matches, field by field, and the zone it is evaluated in."""

    minutes: tuple[int, ...]  # sorted
    hours: tuple[int, ...]  # sorted
    months: tuple[int, ...]  # sorted
    dom: tuple[bool, ...]  # index 1..31
    dow: tuple[bool, ...]  # index 0..6, 0 = Sunday
    day_and: bool
    wildcard: bool
    zone: ZoneInfo


@lru_cache(maxsize=16384)
def compile_schedule(expression: str, timezone: str) -> CompiledSchedule:
    """``expression`` parsed and checked in ``timezone``; raises InvalidSchedule naming what is wrong."""
    if expression == "":
        raise reject("expression is empty")
    parts = expression.split()
    if parts[0].startswith("@"):
        parts = _expand_nickname(parts[0], parts[1:])
    elif len(parts) != 5:
        if len(parts) in (6, 7):
            raise reject(
                f"got {len(parts)} fields; seconds (6-field) and Quartz-style "
                f"(6 or 7 fields) expressions are not supported, {_FORMAT_HINT}"
            )
        raise reject(f"got {len(parts)} fields, expected 5; {_FORMAT_HINT}")
    minute_f, hour_f, dom_f, _month_f, dow_f = parts
    minutes, hours, doms, months, dows = (_parse_field(text, spec) for text, spec in zip(parts, _FIELDS, strict=True))
    for text, other, name, other_name in (
        (dom_f, dow_f, "day-of-month", "day-of-week"),
        (dow_f, dom_f, "day-of-week", "day-of-month"),
    ):
        if _is_star_like(text) and other != "*":
            raise reject(
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
        raise reject(f"the schedule never fires: day-of-month {day_text} never occurs in {_month_list(month_list)}")
    zone = validate_timezone(timezone)
    return CompiledSchedule(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        months=tuple(month_list),
        dom=tuple(d in doms for d in range(32)),
        dow=tuple(d in dows or (d == 0 and 7 in dows) for d in range(7)),
        day_and=day_and,
        wildcard=minute_f.startswith("*") or hour_f.startswith("*"),
        zone=zone,
    )
