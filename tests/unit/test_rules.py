"""Field rules and the key layout: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from dateline.domain.state import Entry, StoryState
from dateline.store.layout import Keys, dedup_field, partition_of
from dateline.store.readmodels import _PAIRS, Change, ReadModels
from dateline_schemas import parse_duration, parse_fuzzy_date
from dateline_schemas._rules import RuleError, check_story_id


@pytest.mark.parametrize(
    ("text", "start", "precision"),
    [
        (
            "2019-02-28T13:25:00+07:00",
            datetime(2019, 2, 28, 13, 25, tzinfo=timezone(timedelta(hours=7))),
            "exact",
        ),
        ("2019-02-28t06:25:00z", datetime(2019, 2, 28, 6, 25, tzinfo=UTC), "exact"),
        ("2019-02-28", datetime(2019, 2, 28, tzinfo=UTC), "day"),
        ("2019-02", datetime(2019, 2, 1, tzinfo=UTC), "month"),
    ],
)
def test_fuzzy_dates_keep_their_precision(text: str, start: datetime, precision: str) -> None:
    parsed = parse_fuzzy_date(text)
    assert (parsed.start, parsed.precision) == (start, precision)


@pytest.mark.parametrize(
    "text", ["2019-13", "2019-02-29", "2019-02-28T13:25", "28/02/2019", "2019-02-28\n"]
)
def test_impossible_or_malformed_dates_are_refused(text: str) -> None:
    with pytest.raises(RuleError, match="RFC 3339"):
        parse_fuzzy_date(text)


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("-PT2H", -timedelta(hours=2)),
        ("PT90M", timedelta(minutes=90)),
        ("+P1DT30S", timedelta(days=1, seconds=30)),
        ("P2W", timedelta(weeks=2)),
        ("PT0.5S", timedelta(seconds=0.5)),
    ],
)
def test_durations(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["P", "PT", "-P", "P1M", "P1Y", "2H", "PT2H\n", "-PT-2H"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(RuleError, match="ISO 8601 duration"):
        parse_duration(text)


def test_a_duration_past_timedelta_is_refused_not_raised() -> None:
    with pytest.raises(RuleError, match="duration too long"):
        parse_duration("P9091244835477050D")


@pytest.mark.parametrize("story", ["a", "0", "hanoi-summit-2019", "a" * 128, "a-b"])
def test_good_story_ids(story: str) -> None:
    check_story_id(story)


def test_partition_is_crc32_of_the_story_id() -> None:
    """Documented so feeds in other languages can compute it: crc32('hanoi-summit-2019') % 8."""
    assert partition_of("hanoi-summit-2019", 8) == 1886439217 % 8 == 1
    assert {partition_of(f"s{i}", 8) for i in range(200)} == set(range(8))


def test_all_keys_of_a_story_share_its_partitions_hash_tag() -> None:
    keys = Keys("dateline", 8)
    p = keys.partition("hanoi-summit-2019")
    tag = f"{{p{p}}}"
    for key in (keys.story("hanoi-summit-2019"), keys.log(p), keys.ids(p)):
        assert key.split("{")[1].split("}")[0] == tag.strip("{}")


def test_dedup_fields_cannot_collide() -> None:
    """("ab", "c") and ("a", "bc") are different updates and must stay apart."""
    assert dedup_field("ab", "c") != dedup_field("a", "bc")


def test_no_read_model_command_outgrows_what_a_script_can_unpack() -> None:
    """The projector's commit script unpacks each command's words; Lua stops at 8,000."""
    entries = [
        Entry(n, f"u{n}", "dateline.statement.made", "t", "minute", "s", "x") for n in range(9000)
    ]
    state = StoryState(id="long", version=9000, timeline=entries)
    change = Change(StoryState(id="long"), state, whole_timeline=True)
    commands = ReadModels(Keys("t", 8), "v1").commands([change]).commands
    assert max(len(c) for c in commands) <= 2 + 2 * _PAIRS
    pushed = [w for c in commands if c[0] == "RPUSH" for w in c[2:]]
    decode = msgspec.json.Decoder(Entry).decode
    assert [decode(raw).version for raw in pushed] == list(range(9000))  # type: ignore[arg-type]
