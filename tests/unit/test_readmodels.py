"""The commands that write a story's read models: pure, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from dateline.domain import Journal, project
from dateline.domain.state import Item, Statement, StoryState, When
from dateline.store.layout import (
    Keys,
    ModelKeys,
    group_of,
    is_projection_group,
    version_of_checkpoint,
)
from dateline.store.readmodels import (
    BOARDS_BY_TIME,
    OWN_STATEMENTS,
    PER_PARTITION,
    Change,
    ReadModels,
    _stored,
    without_timeline,
)
from tests.projection_helpers import hanoi


def statement(ref: str, text: str = "Words") -> Statement:
    return Statement(ref, "Kim Jong Un", text, "2019-02-28T06:15:00+00:00", "exact")


def state(version: int, *refs: str, **changed: str) -> StoryState:
    said = {ref: statement(ref, changed.get(ref, "Words")) for ref in refs}
    return StoryState(id="talks", version=version, statements=said)


def on_list(commands: Sequence[tuple[object, ...]], models: ReadModels) -> list[tuple[object, ...]]:
    return [c for c in commands if c[1] == models.statements("talks")]


def test_a_commit_appends_new_statements_and_rewrites_changed_ones_in_place() -> None:
    models = ReadModels(Keys("t", 8), "v1")
    old, new = state(2, "a", "b"), state(3, "a", "b", "c", b="Other words")
    writes = models.commands([Change(old, new, whole_timeline=False)])
    key = models.statements("talks")
    member = b'"b":' + msgspec.json.encode(new.statements["b"])
    assert on_list(writes.commands, models) == [
        ("LSET", key, 1, member),
        ("RPUSH", key, b'"c":' + msgspec.json.encode(new.statements["c"])),
    ]
    assert msgspec.json.decode(writes.states["talks"])["statements"] == {}


def test_a_commit_told_what_the_fold_wrote_writes_those_and_compares_if_it_falls_short() -> None:
    """Told by the fold's journal what it wrote and replaced, a commit writes those; told
    of fewer new statements than the story gained, it compares, with `old` as it was."""
    models = ReadModels(Keys("t", 8), "v1")
    old, new = state(2, "a", "b"), state(3, "a", "b", "c", b="Other words")
    untold = on_list(models.commands([Change(old, new, whole_timeline=False)]).commands, models)
    b, c = ("b", old.statements["b"]), ("c", None)
    for said in ([c, b], [b, c, ("b", statement("b", "Between"))]):  # any order, again
        journal = Journal(2, 0, said)
        told = models.commands([Change(old, new, whole_timeline=False, journal=journal)])
        assert on_list(told.commands, models) == untold
    # "b" left out: not looked at, so not written (the journal holds all it wrote) ...
    journal = Journal(2, 0, [c])
    told = models.commands([Change(old, new, whole_timeline=False, journal=journal)])
    assert on_list(told.commands, models) == untold[1:]
    # ... but a new statement left out does not add up: the states are compared.
    journal = Journal(2, 0, [b])
    told = models.commands([Change(old, new, whole_timeline=False, journal=journal)])
    assert on_list(told.commands, models) == untold


def test_a_statement_whose_speaker_changed_in_place_moves_between_speakers() -> None:
    """The in-place branch (`_appended`): a statement rewritten where it was, by another
    speaker now, leaves the old speaker's index and joins the new one's; the others stay
    where they are. The same as the whole rewrite says."""
    models = ReadModels(Keys("t", 8), "v1")
    old = state(2, "a", "b")
    moved = msgspec.structs.replace(old.statements["b"], speaker="Donald Trump")
    new = StoryState(id="talks", version=3, statements={"a": old.statements["a"], "b": moved})
    region = models.region_of("talks")
    was, now = region.speaker("Kim Jong Un"), region.speaker("Donald Trump")

    def speakers(whole: bool) -> list[tuple[object, ...]]:
        commands = models.commands([Change(old, new, whole_timeline=whole)]).commands
        return [c for c in commands if c[1] in (was, now)]

    entry = msgspec.json.encode({"story": "talks", "statement": moved})
    in_place = speakers(False)
    assert in_place == [("HDEL", was, "talks/b"), ("HSET", now, "talks/b", entry)]
    assert in_place == speakers(True)


def test_statements_out_of_their_old_order_are_written_anew() -> None:
    models = ReadModels(Keys("t", 8), "v1")
    old, new = state(2, "b", "c"), state(3, "a", "b", "c")  # a late one sorts first
    commands = on_list(models.commands([Change(old, new, whole_timeline=False)]).commands, models)
    assert [c[0] for c in commands] == ["DEL", "RPUSH"]
    assert len(commands[1]) == 2 + 3


def test_a_version_of_an_older_shape_keeps_statements_inline() -> None:
    models = ReadModels(Keys("t", 8), "v1", shape=OWN_STATEMENTS - 1)
    writes = models.commands([Change(state(0), state(1, "a"), whole_timeline=False)])
    assert on_list(writes.commands, models) == []
    assert list(msgspec.json.decode(writes.states["talks"])["statements"]) == ["a"]


def test_merge_keys_are_kept_apart_and_written_when_new() -> None:
    models = ReadModels(Keys("t", 8), "v1")
    old = state(1, "a")
    old.statement_keys = {"kim\x1fwords\x1f2019-02-28": "a"}
    new = state(2, "a", "b")
    new.statement_keys = {**old.statement_keys, "kim\x1fother\x1f2019-02-28": "b"}
    writes = models.commands([Change(old, new, whole_timeline=False)])
    key = models.merge_keys("talks")
    assert [c for c in writes.commands if c[1] == key] == [
        ("HSET", key, "kim\x1fother\x1f2019-02-28", "b")
    ]
    assert "statement_keys" not in msgspec.json.decode(writes.states["talks"])
    # Told what the fold wrote, the new keys are taken from the end, as the fold adds them.
    told = models.commands([Change(old, new, False, Journal(1, 1, [("b", None)]))]).commands
    assert [c for c in told if c[1] == key] == [("HSET", key, "kim\x1fother\x1f2019-02-28", "b")]
    fewer = models.commands([Change(new, old, False, Journal(2, 2))]).commands
    assert [c[0] for c in fewer if c[1] == key] == ["DEL", "HSET"]
    whole = models.commands([Change(old, new, whole_timeline=True)]).commands
    assert [c[0] for c in whole if c[1] == key] == ["DEL", "HSET"]


def test_merge_keys_gone_moved_or_changed_are_written_anew() -> None:
    """Only keys added at the end are written alone (the fold only adds them): one that
    went, moved or now names another statement rewrites them all."""
    models = ReadModels(Keys("t", 8), "v1")
    old, new = state(1, "a", "b"), state(2, "a", "b", "c")
    old.statement_keys = {"k1": "a", "k2": "b"}
    key = models.merge_keys("talks")
    for keys in ({"k1": "a", "k3": "c"}, {"k2": "b", "k1": "a"}, {"k1": "a", "k2": "c"}):
        new.statement_keys = keys
        commands = models.commands([Change(old, new, whole_timeline=False)]).commands
        assert [c for c in commands if c[1] == key] == [
            ("DEL", key),
            ("HSET", key, *[x for pair in keys.items() for x in pair]),
        ]
    new.statement_keys = {"k1": "a", "k2": "b", "k3": "c"}
    commands = models.commands([Change(old, new, whole_timeline=False)]).commands
    assert [c for c in commands if c[1] == key] == [("HSET", key, "k3", "c")]


def test_a_stored_state_is_the_state_without_timeline_merge_keys_or_statements() -> None:
    """The bytes shape 3 has always stored (the readers' splice needs `"statements":{}`),
    now made without converting the state to builtins first."""
    state = project("hanoi-summit-2019", hanoi())
    assert state.statements and state.statement_keys and state.timeline
    before = without_timeline(msgspec.structs.replace(state, statements={}, statement_keys={}))
    del before["statement_keys"]
    stored = msgspec.json.encode(_stored(state))
    assert stored == msgspec.json.encode(before)
    assert b'"statements":{}' in stored


def _keys_of(command: tuple[object, ...]) -> list[str]:
    """The keys a read-model command names (MSET: every other word; else the first)."""
    if command[0] == "MSET":
        return [str(k) for k in command[1::2]]
    return [str(command[1])]


def test_a_commit_of_one_partition_names_keys_of_its_slot_only() -> None:
    """From shape 5 the keys of a partition's commit carry its hash tag, and so does its
    stream: on a cluster, one script in one slot."""
    keys = Keys("t", 8)
    models = ReadModels(keys, "v1")
    stories = [f"story-{n}" for n in range(40)]
    by_partition: dict[int, list[str]] = {}
    for story in stories:
        by_partition.setdefault(keys.partition(story), []).append(story)
    assert len(by_partition) > 1
    for partition, some in by_partition.items():
        changes = []
        for story in some:
            new = state(1, "a")
            new.id, new.status = story, "developing"
            changes.append(Change(StoryState(id=story), new, whole_timeline=True))
        written = {k for c in models.commands(changes).commands for k in _keys_of(c)}
        tag = f"{{p{partition}}}"
        assert written and all(tag in k and k.count("{") == 1 for k in written), written
        assert tag in keys.log(partition)


def test_a_batch_over_partitions_writes_each_story_to_its_own_partitions_index() -> None:
    keys = Keys("t", 8)
    models = ReadModels(keys, "v1")
    a, b = (
        "story-1",
        next(
            s
            for s in (f"story-{n}" for n in range(2, 50))
            if keys.partition(s) != keys.partition("story-1")
        ),
    )
    changes = [
        Change(StoryState(id=s), StoryState(id=s, version=1), whole_timeline=True) for s in (a, b)
    ]
    commands = models.commands(changes).commands
    index = {c[1]: c[2::2] for c in commands if c[0] == "HSET" and str(c[1]).endswith(":index")}
    assert index == {
        models.region_of(a).index: (a,),
        models.region_of(b).index: (b,),
    }


def test_a_version_built_before_shape_5_keeps_its_keys() -> None:
    """What an older version's readers and writers name is what it was built with."""
    models = ReadModels(Keys("t", 8), "v1", shape=PER_PARTITION - 1)
    assert models.story("talks") == "t:rm:v1:story:talks"
    assert [r.index for r in models.regions] == ["t:rm:v1:index"]
    assert models.region(5).checkpoint == "t:rm:v1:checkpoint"
    now = ReadModels(Keys("t", 8), "v1")
    assert now.region(5).checkpoint == "t:rm:v1:{p5}:checkpoint"
    assert now.story("talks") == f"t:rm:v1:{{p{Keys('t', 8).partition('talks')}}}:story:talks"
    assert len(now.regions) == 8


def test_the_version_of_a_checkpoint_key_whatever_its_layout() -> None:
    for models in (ModelKeys("a:b", "v7"), ModelKeys("a:b", "v7", Keys("a:b", 4))):
        assert {version_of_checkpoint("a:b", r.checkpoint) for r in models.regions} == {"v7"}


def test_a_projection_versions_group_is_told_from_a_kit_apps() -> None:
    assert is_projection_group(group_of("v3")) and is_projection_group(group_of("v12"))
    assert not any(map(is_projection_group, ["cms", "deliver", "projector-vx", "projector-v1x"]))


def _board(*items: Item) -> StoryState:
    return StoryState(id="talks", version=len(items), schedule={i.item: i for i in items})


def test_every_item_is_in_the_boards_index_those_with_no_known_start_last() -> None:
    """From shape 6 an item with no known start is indexed at +inf, so that a page of the
    board is read by its index; an older shape leaves it out, and takes out one that had a
    start and has none now (a retraction refolded it), which it left where it was."""
    dated = Item("talks", "Talks", "scheduled", When("2019-02-28T09:00:00+07:00", "exact"))
    undated = Item("dinner", "Dinner", "postponed")
    lost = Item("talks", "Talks", "scheduled")
    now = ReadModels(Keys("t", 8), "v1")
    key = now.region_of("talks").schedule_by_start
    writes = now.commands([Change(StoryState(id="talks"), _board(dated, undated), True)]).commands
    assert [c for c in writes if c[1] == key] == [
        ("ZADD", key, 1551319200.0, "talks/talks", math.inf, "talks/dinner")
    ]
    writes = now.commands([Change(_board(dated), _board(lost), True)]).commands
    assert [c for c in writes if c[1] == key] == [("ZADD", key, math.inf, "talks/talks")]
    old = ReadModels(Keys("t", 8), "v1", shape=BOARDS_BY_TIME - 1)
    key = old.region_of("talks").schedule_by_start
    writes = old.commands([Change(StoryState(id="talks"), _board(dated, undated), True)]).commands
    assert [c for c in writes if c[1] == key] == [
        ("ZREM", key, "talks/dinner"),
        ("ZADD", key, 1551319200.0, "talks/talks"),
    ]
    writes = old.commands([Change(_board(dated), _board(lost), True)]).commands
    assert [c for c in writes if c[1] == key] == [("ZREM", key, "talks/talks")]


def test_a_speakers_statements_are_indexed_by_time_and_leave_with_the_speaker() -> None:
    """From shape 6 a statement is in its speaker's index by time, so that a page of what
    one person said is read by it; a statement whose speaker changed leaves the old
    speaker's index as it leaves the old speaker's hash. An older shape has no index."""
    said = Statement("s1", "Kim Jong Un", "Words", "2019-02-28T13:25:00+07:00", "exact")
    moved = Statement("s1", "Donald Trump", "Words", "2019-02-28T13:25:00+07:00", "exact")
    old_state = StoryState(id="talks", version=1, statements={"s1": said})
    new_state = StoryState(id="talks", version=2, statements={"s1": moved})
    now = ReadModels(Keys("t", 8), "v1")
    region = now.region_of("talks")
    kim, trump = region.speaker_by_time("kim jong un"), region.speaker_by_time("Donald Trump")
    writes = now.commands([Change(StoryState(id="talks"), old_state, True)]).commands
    assert [c for c in writes if c[0] == "ZADD" and c[1] == kim] == [
        ("ZADD", kim, 1551335100.0, "talks/s1")
    ]
    writes = now.commands([Change(old_state, new_state, True)]).commands
    assert ("ZREM", kim, "talks/s1") in writes
    assert ("ZADD", trump, 1551335100.0, "talks/s1") in writes
    old = ReadModels(Keys("t", 8), "v1", shape=BOARDS_BY_TIME - 1)
    writes = old.commands([Change(old_state, new_state, True)]).commands
    assert not [c for c in writes if "speaker-at" in str(c[1])]


def test_a_speakers_index_is_named_from_its_hash_as_from_the_name() -> None:
    """The commit names a speaker's index by time from its hash's key (one fold of the
    name, not two), whatever the prefix and the name spell."""
    for models in (ReadModels(Keys("t:speaker:x", 8), "v1"), ReadModels(Keys("t", 8), "v1")):
        region = models.region_of("talks")
        for name in ("Kim Jong Un", "kim:by_time", "Ri Yong-ho ", "speaker:x"):
            assert region.by_time_of_speaker(region.speaker(name)) == region.speaker_by_time(name)
        assert region.speaker_by_time("kim") != region.speaker("kim:at")
