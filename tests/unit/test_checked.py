"""The rules `Checked` writes out for each class decide and explain as the rules do.

The reference here is the contract's rules read one by one, field after field: the
written-out checker must refuse the same values with the same message, and take the
values a fast test in C fails but the rule accepts (U+2028 fails `isprintable`)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dateline_schemas import TYPES, InvalidUpdate, decode_update
from dateline_schemas._base import TRUSTED, Checked, _rules_of
from dateline_schemas._rules import RuleError
from dateline_schemas.correction import CorrectionIssuedData
from dateline_schemas.statement import StatementMadeData
from dateline_schemas.story import StoryOpened, StoryOpenedData
from tests.factories import encode, update


def reference(value: Checked) -> str | None:
    """The first refusal of `value`'s rules, read one by one; None if it passes them."""
    for name, rule, is_list in _rules_of(type(value)):
        got = getattr(value, name)
        if got is None:
            continue
        for label, item in (
            [(f"{name}[{i}]", x) for i, x in enumerate(got)] if is_list else [(name, got)]
        ):
            try:
                rule.check(item)
            except RuleError as exc:
                return f"{label}: {exc}"
    return None


def unchecked(cls: type[Checked], **fields: Any) -> Checked:
    token = TRUSTED.set(True)
    try:
        return cls(**fields)
    finally:
        TRUSTED.reset(token)


def built(cls: type[Checked], **fields: Any) -> str | None:
    try:
        cls(**fields)
    except ValueError as exc:
        return str(exc)
    return None


# Every kind of character a String rule looks at: controls, noncharacters, separators
# that `isprintable` refuses and the rule allows, and plain text.
ALLOWED = ["a", " ", "é", "ä", "’", "\u2028", "\u2029", "\u00a0", "\u200b", "\u0301"]
REFUSED = ["\t", "\n", "\x00", "\u0085", "\u007f", "\ufdd0", "\ufffe", "\U0010ffff", "\U0001fffe"]
CHARS = st.sampled_from(ALLOWED + REFUSED)
TEXTS = st.text(CHARS, min_size=1, max_size=12)
IDS = st.one_of(st.from_regex(r"[a-z0-9][a-z0-9-]{0,6}[a-z0-9]", fullmatch=True), TEXTS)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, speaker=TEXTS, statement=IDS, context=st.none() | TEXTS)
def test_a_statement_is_refused_as_its_rules_refuse_it(
    text: str, speaker: str, statement: str, context: str | None
) -> None:
    fields = {"statement": statement, "speaker": speaker, "text": text, "context": context}
    assert built(StatementMadeData, **fields) == reference(unchecked(StatementMadeData, **fields))


@settings(max_examples=300, deadline=None)
@given(people=st.lists(TEXTS, max_size=4), title=TEXTS)
def test_a_list_names_the_item_it_refuses(people: list[str], title: str) -> None:
    fields: dict[str, Any] = {"title": title, "people": people}
    assert built(StoryOpenedData, **fields) == reference(unchecked(StoryOpenedData, **fields))


@pytest.mark.parametrize("text", ["Talks\u2028ended", "Kim\u00a0Jong Un", "zero\u200bwidth"])
def test_a_string_isprintable_refuses_but_the_rule_allows_is_taken(text: str) -> None:
    assert not text.isprintable()
    for type_ in sorted(TYPES):
        doc = update(type_, source=f"urn:feed:{text}")
        assert decode_update(encode(doc)).update.source == f"urn:feed:{text}"
    data = {"statement": "s1", "speaker": "Kim", "text": text}
    decoded = decode_update(encode(update("dateline.statement.made", data=data)))
    assert isinstance(decoded.update.data, StatementMadeData)
    assert decoded.update.data.text == text


@pytest.mark.parametrize("wrong", [123, 1.5, b"summit", ["summit"]])
def test_a_field_built_in_code_with_the_wrong_type_is_explained(wrong: object) -> None:
    """Decoding checks types before the rules; a Struct built in Python does not."""
    said = built(StatementMadeData, statement=wrong, speaker="Kim", text="Yes")
    assert said is not None and said.startswith("statement: expected a ref"), said
    opened = decode_update(encode(update("dateline.story.opened"))).update
    fields = {name: getattr(opened, name) for name in opened.__struct_fields__}
    said = built(StoryOpened, **{**fields, "subject": wrong})
    assert said is not None and said.startswith("subject: expected a story id"), said


def test_a_check_across_fields_still_runs() -> None:
    """Classes with a `check` of their own keep it after their fields' rules."""
    with pytest.raises(InvalidUpdate) as info:
        decode_update(
            encode(
                update(
                    "dateline.correction.issued",
                    data={
                        "corrects": "wire-a-0001",
                        "changes": {"Bad Field": "x"},
                        "note": "A field name with a space.",
                    },
                )
            )
        )
    assert "not a payload field name" in str(info.value)
    assert CorrectionIssuedData.check is not Checked.check
