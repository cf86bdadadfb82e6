"""Base Structs shared by every update: the CloudEvents envelope and checked payloads."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime
from typing import Annotated, ClassVar, Literal

import msgspec

from dateline_schemas._rules import CE_STRING, Rule, RuleError, StoryId

Precision = Literal["exact", "minute", "day", "month", "approximate"]

TRUSTED: ContextVar[bool] = ContextVar("dateline_trusted_decode", default=False)
"""Set while decoding records the log holds: they passed every rule when appended, and
checking them again on every read was a tenth of the projector's time."""


def _unwrap(hint: object) -> tuple[object, bool]:
    """`X | None` -> X and `list[X]` -> (X, True), leaving `Annotated` metadata intact."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


Check = Callable[[object], None]


def _rules_of(cls: type) -> list[tuple[str, Rule, bool]]:
    """(field, its rule, is_list) for every field whose type carries a `Rule`."""
    found: list[tuple[str, Rule, bool]] = []
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        inner, is_list = _unwrap(hint)
        rules = [m for m in getattr(inner, "__metadata__", ()) if isinstance(m, Rule)]
        found.extend((name, rule, is_list) for rule in rules)
    return found


def _apply(check: Check, label: str, value: object) -> None:
    try:
        check(value)
    except RuleError as exc:
        raise ValueError(f"{label}: {exc}") from None


def _checker(cls: type) -> Callable[[Checked], None]:
    """A function that checks every `Rule` of `cls`'s fields, written out for the class.

    Every update's every field passes here on its way in, and a loop over a table of
    rules spent most of its time on the loop (getattr by name, unpacking, calls): a
    fifth of an append's CPU. So, as `dataclasses` writes `__init__`, this writes one
    statement a field, whose test in C (`Rule.passes`) lets a valid value through
    without a call into Python; the rule's own check runs only when that test fails,
    to decide and to explain."""
    lines = ["def check_rules(self):"]
    names: dict[str, object] = {"_apply": _apply}
    for n, (name, rule, is_list) in enumerate(_rules_of(cls)):
        names[f"passes{n}"], names[f"check{n}"] = rule.passes, rule.checker
        test = f"(x.__class__ is str and passes{n}(x))"
        if is_list:
            lines += [
                f"    v = self.{name}",
                "    if v is not None:",
                "        for i, x in enumerate(v):",
                f"            if not {test}:",
                f"                _apply(check{n}, f'{name}[{{i}}]', x)",
            ]
        else:
            lines += [
                f"    x = self.{name}",
                f"    if x is not None and not {test}:",
                f"        _apply(check{n}, {name!r}, x)",
            ]
    if cls.check is not Checked.check:  # type: ignore[attr-defined]
        lines.append("    self.check()")
    lines.append("    return None")  # a body for a class with no rule and no check
    exec("\n".join(lines), names)  # noqa: S102  # built from field names only
    return typing.cast(Callable[[Checked], None], names["check_rules"])


class Checked(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """A Struct whose `Rule`-marked fields are checked on every decode and construction.

    Not tracked by the garbage collector (`gc=False`): an update is a tree of values,
    with no cycle to find, and a rebuild or a projector decodes millions of them."""

    __checkers__: ClassVar[dict[type, Callable[[Checked], None]]] = {}

    def __post_init__(self) -> None:
        if TRUSTED.get():
            return
        cls = type(self)
        check_rules = Checked.__checkers__.get(cls)
        if check_rules is None:
            check_rules = Checked.__checkers__[cls] = _checker(cls)
        check_rules(self)

    def check(self) -> None:
        """Rules that span fields; subclasses override. Raise ValueError('field: why')."""


class Payload(Checked, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The `data` of an update. Unknown fields are refused: they are almost always typos."""


Time = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 date-time with offset: when it happened."),
]


class Envelope(Checked, frozen=True, tag_field="type", omit_defaults=True, kw_only=True):
    """CloudEvents 1.0 attributes common to every update (structured JSON mode)."""

    specversion: Literal["1.0"]
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256), CE_STRING]
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=512), CE_STRING]
    subject: StoryId
    time: Time
    timeprecision: Precision = "exact"
    expectedversion: Annotated[int, msgspec.Meta(ge=0)] | None = None
    datacontenttype: Literal["application/json"] | None = None
    dataschema: Annotated[str, msgspec.Meta(min_length=1, max_length=512), CE_STRING] | None = None
    # Set by the log on append, never taken from a producer (decoding refuses them).
    version: Annotated[int, msgspec.Meta(ge=1)] | None = None
    position: str | None = None
    recordedtime: Time | None = None
    editor: bool | None = None
    """Set by the log: the writer held the editor right (rule 5) when it was accepted."""
