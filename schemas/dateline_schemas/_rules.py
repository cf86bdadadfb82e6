"""Field rules that a JSON Schema pattern alone cannot state exactly.

msgspec's `pattern` uses Python's `re.search`, where `$` also matches before a
trailing newline, and a regex cannot tell 2019-02-30 from 2019-02-28. So the
types below carry the pattern for the exported JSON Schema *and* a `Rule` that
`_base.Checked.__post_init__` applies with `fullmatch` and real parsing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Final

import msgspec

STORY_ID_PATTERN: Final = r"^[a-z0-9](?:[a-z0-9-]{0,126}[a-z0-9])?$"
REF_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
# Date-only and year-month strings stand for day and month precision.
FUZZY_DATE_PATTERN: Final = (
    r"^\d{4}-\d{2}(?:-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2}))?)?$"
)
DURATION_PATTERN: Final = r"^[+-]?P(?:\d+W|(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?)$"

_STORY_ID = re.compile(STORY_ID_PATTERN.strip("^$"))
_REF = re.compile(REF_PATTERN.strip("^$"))
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})"
)
_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_DURATION = re.compile(
    r"([+-]?)P(?:(\d+)W|(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?)"
)


class RuleError(ValueError):
    """A value broke a rule; the message says which rule and what was given."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Marker in `Annotated[...]` metadata: the check `Checked` runs on the field."""

    name: str

    def check(self, value: object) -> None:
        _CHECKS[self.name](value)

    @property
    def checker(self) -> Callable[[object], None]:
        """The check itself, for a caller that runs it often."""
        return _CHECKS[self.name]

    @property
    def passes(self) -> Callable[[str], object]:
        """A test in C that is truthy only for a value the check accepts.

        Falsy says nothing (a valid value may fail it, as U+2028 fails `isprintable`);
        the check then decides, and explains a refusal. Every update's strings pass
        here: the checks in Python cost a fifth of an append's CPU."""
        return _PASSES.get(self.name, _undecided)


def _shown(value: object) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def check_story_id(value: object) -> None:
    if not isinstance(value, str) or not _STORY_ID.fullmatch(value):
        raise RuleError(
            "expected a story id: 1 to 128 of a-z, 0-9 and '-', "
            f"starting and ending with a letter or digit, got {_shown(value)}"
        )


def check_ref(value: object) -> None:
    if not isinstance(value, str) or not _REF.fullmatch(value):
        raise RuleError(
            "expected a ref: 1 to 128 of A-Z, a-z, 0-9 and '._:-', "
            f"starting with a letter or digit, got {_shown(value)}"
        )


@dataclass(frozen=True, slots=True)
class FuzzyDate:
    """A date as precise as the source knew it: an instant, a day or a month."""

    start: datetime  # the earliest instant it can mean, timezone-aware
    precision: str  # "exact", "day" or "month"


@functools.lru_cache(maxsize=4096)
def parse_fuzzy_date(value: str) -> FuzzyDate:
    """Parse an RFC 3339 date-time, a date (day precision) or a year-month.

    Cached (the result is frozen): a story's schedule names the same few dates again
    and again, and a fold parses each of them every time it meets one."""
    try:
        if m := _DATETIME.fullmatch(value):
            text = value.replace("z", "Z").replace("t", "T").replace(" ", "T")
            parsed = datetime.fromisoformat(text)
            return FuzzyDate(parsed, "exact")
        if m := _DAY.fullmatch(value):
            day = date(int(m[1]), int(m[2]), int(m[3]))
            return FuzzyDate(datetime(day.year, day.month, day.day, tzinfo=UTC), "day")
        if m := _MONTH.fullmatch(value):
            return FuzzyDate(datetime(int(m[1]), int(m[2]), 1, tzinfo=UTC), "month")
    except ValueError:
        pass
    raise RuleError(
        "expected RFC 3339 date or datetime (such as 2019-02-28T13:25:00+07:00, "
        f"2019-02-28 or 2019-02), got {_shown(value)}"
    )


def check_fuzzy_date(value: object) -> None:
    if not isinstance(value, str):
        raise RuleError(f"expected RFC 3339 date or datetime, got {_shown(value)}")
    parse_fuzzy_date(value)


@functools.lru_cache(maxsize=1024)
def parse_duration(value: str) -> timedelta:
    """Parse a signed ISO 8601 duration of fixed length (weeks, days, hours, minutes, seconds).

    Cached: shifts are few ("-PT2H", "PT30M"), and a fold and a summary both parse one."""
    m = _DURATION.fullmatch(value)
    if not m or value.rstrip("T").endswith(("P", "T")) or not any(m.groups()[1:]):
        raise RuleError(
            "expected a signed ISO 8601 duration of weeks, days, hours, minutes or "
            f"seconds, such as -PT2H, got {_shown(value)}"
        )
    sign, weeks, days, hours, minutes, seconds = m.groups()
    try:
        delta = timedelta(
            weeks=int(weeks or 0),
            days=int(days or 0),
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=float(seconds or 0),
        )
    except OverflowError:  # past timedelta's range (about 2.7 million years)
        raise RuleError(f"duration too long to mean a schedule change: {_shown(value)}") from None
    return -delta if sign == "-" else delta


# CloudEvents' type system, String: no control characters (U+0000-U+001F,
# U+007F-U+009F), no noncharacters (U+FDD0-U+FDEF and the last two code points of every
# plane), no surrogates (a lone one decodes from a JSON escape such as "\ud800").
_NONCHARACTERS = "".join(chr(p << 16 | 0xFFFE) + chr(p << 16 | 0xFFFF) for p in range(17))
_NOT_STRING = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef" + _NONCHARACTERS + "]")


def string_problem(value: str) -> str | None:
    """Why `value` is no CloudEvents String, or None if it is one."""
    if value.isprintable():  # no Cc, Cs or Cn code point: none the rule refuses (fast, in C)
        return None
    found = _NOT_STRING.search(value)
    if found is None:
        return None
    char = ord(found[0])
    kind = (
        "a control character"
        if char <= 0x9F
        else "a surrogate"
        if 0xD800 <= char <= 0xDFFF
        else "a noncharacter"
    )
    return (
        f"U+{char:04X} at {found.start()} is {kind}, which a CloudEvents String may not "
        "hold (no controls, noncharacters or surrogates; a paragraph break is U+2029)"
    )


def check_string(value: object) -> None:
    if isinstance(value, str) and (why := string_problem(value)) is not None:
        raise RuleError(why)


def check_duration(value: object) -> None:
    if not isinstance(value, str):
        raise RuleError(f"expected an ISO 8601 duration such as -PT2H, got {_shown(value)}")
    parse_duration(value)


def _undecided(value: str) -> bool:
    return False


_PASSES: dict[str, Callable[[str], object]] = {
    "story_id": _STORY_ID.fullmatch,
    "ref": _REF.fullmatch,
    "string": str.isprintable,
}

_CHECKS = {
    "story_id": check_story_id,
    "ref": check_ref,
    "fuzzy_date": check_fuzzy_date,
    "duration": check_duration,
    "string": check_string,
}

StoryId = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={"pattern": STORY_ID_PATTERN, "maxLength": 128},
        description="Story id: lowercase letters, digits and '-', 1 to 128 characters.",
    ),
    Rule("story_id"),
]
Ref = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={"pattern": REF_PATTERN, "maxLength": 128},
        description="A producer-chosen name for a thing inside one story.",
    ),
    Rule("ref"),
]
DateText = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={"pattern": FUZZY_DATE_PATTERN},
        description="RFC 3339 date-time; a date (day precision) or year-month (month precision).",
    ),
    Rule("fuzzy_date"),
]
Duration = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={"pattern": DURATION_PATTERN},
        description="Signed ISO 8601 duration relative to the current start, e.g. -PT2H.",
    ),
    Rule("duration"),
]
CE_STRING = Rule("string")
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=16384), CE_STRING]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=512), CE_STRING]
