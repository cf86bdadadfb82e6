"""The log on a real server, and on a cluster: what an append writes, refuses and returns."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis.exceptions import ResponseError
from structlog.testing import capture_logs

from dateline.store.layout import Keys
from dateline.store.log import Log
from dateline_schemas import TYPES
from tests.conftest import keys_written
from tests.factories import encode, update
from tests.invalid_cases import CASES, Case
from tests.projection_helpers import HANOI_VERSION
from tests.raw import script_calls

HANOI = Path(__file__).resolve().parents[2] / "examples" / "hanoi-summit-2019.ndjson"


pytestmark = pytest.mark.cluster_too  # each server, and the local cluster


@pytest.mark.parametrize("type_", sorted(TYPES))
async def test_every_type_round_trips_through_the_log(log: Log, type_: str) -> None:
    doc = update(type_)
    [result] = await log.append([encode(doc)])
    assert (result.status, result.version) == ("appended", 1)
    [stored] = await log.read_story_json(doc["subject"])
    record = msgspec.json.decode(stored)
    assert record["data"] == doc["data"]
    assert (record["version"], record["position"]) == (1, result.position)
    [(entry_id, from_partition)] = await log.read_partition(log.keys.partition(doc["subject"]))
    assert result.position == f"{log.keys.partition(doc['subject'])}:{entry_id}"
    assert from_partition == (await log.read_story(doc["subject"]))[0]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_invalid_updates_write_nothing(log: Log, case: Case) -> None:
    [result] = await log.append([case.raw])
    assert (result.status, result.field) == ("invalid", case.field)
    assert case.says in (result.reason or "")
    assert await keys_written(log) == []


async def test_versions_are_gap_free_and_positions_increase(log: Log) -> None:
    results = await log.append([encode(update()) for _ in range(300)])
    assert [r.version for r in results] == list(range(1, 301))
    ids = [tuple(map(int, r.position.split(":")[1].split("-"))) for r in results if r.position]
    assert ids == sorted(ids) and len(set(ids)) == 300


async def test_a_duplicate_returns_the_original_and_writes_nothing(log: Log) -> None:
    first = encode(update(id="wire-1"))
    [original] = await log.append([first])
    before = await log.redis.xlen(log.keys.log(log.keys.partition("hanoi-summit-2019")))
    [again] = await log.append([encode(update(id="wire-1", data={"title": "changed"}))])
    assert (again.status, again.version, again.position) == ("duplicate", 1, original.position)
    assert await log.version("hanoi-summit-2019") == 1
    assert await log.redis.xlen(log.keys.log(log.keys.partition("hanoi-summit-2019"))) == before


async def test_same_id_from_another_source_is_another_update(log: Log) -> None:
    results = await log.append(
        [encode(update(id="1", source="urn:a")), encode(update(id="1", source="urn:b"))]
    )
    assert [r.status for r in results] == ["appended", "appended"]


async def test_duplicates_inside_one_batch(log: Log) -> None:
    doc = encode(update(id="dup"))
    results = await log.append([doc, doc, doc])
    assert [r.status for r in results] == ["appended", "duplicate", "duplicate"]
    assert {r.position for r in results} == {results[0].position}


async def test_a_duplicate_of_an_aborted_update_is_aborted_too(log: Log) -> None:
    doc = encode(update(id="dup"))
    results = await log.append([doc, doc, encode(update(expectedversion=5))], atomic=True)
    assert [r.status for r in results] == ["aborted", "aborted", "conflict"]
    assert await keys_written(log) == []


async def test_a_stream_ahead_of_the_clock_takes_appends_after_its_last_id(log: Log) -> None:
    """The append asks a stream for an entry at or past this millisecond: a stream whose
    last ID is later (a clock that went back, or an earlier append in the same
    millisecond) takes the next ID after it."""
    stream = log.keys.log(log.keys.partition("hanoi-summit-2019"))
    ahead = int(datetime.now(UTC).timestamp() * 1000) + 3_600_000
    await log.redis.xadd(stream, {"__data__": b"{}"}, id=f"{ahead}-5")
    first, second = await log.append([encode(update()), encode(update())])
    [third] = await log.append([encode(update())])
    home = log.keys.partition("hanoi-summit-2019")
    assert [r.position for r in (first, second, third)] == [
        f"{home}:{ahead}-{seq}" for seq in (6, 7, 8)
    ]
    assert await log.redis.xlen(stream) == 4
    records = await log.read_story("hanoi-summit-2019")
    assert [r.position for r in records] == [first.position, second.position, third.position]


async def test_a_stream_whose_last_entry_was_deleted_takes_ids_after_it(log: Log) -> None:
    """Its last ID is past every entry it holds: the first try at an ID writes nothing,
    and the append goes on from the stream's last ID."""
    stream = log.keys.log(log.keys.partition("hanoi-summit-2019"))
    ahead = int(datetime.now(UTC).timestamp() * 1000) + 3_600_000
    await log.redis.xadd(stream, {"__data__": b"{}"}, id=f"{ahead}-5")
    await log.redis.xdel(stream, f"{ahead}-5")
    [result] = await log.append([encode(update())])
    assert result.position == f"{log.keys.partition('hanoi-summit-2019')}:{ahead}-6"
    assert await log.redis.xlen(stream) == 1


async def test_a_call_of_one_update_answers_and_writes_as_a_batch_does(log: Log) -> None:
    """The script's short path (one update a call, as a feed's POST sends it) against
    its batch path (the same update beside a duplicate, which writes nothing): the same
    answers, the same stored records but for where and when they were stored."""
    other = Log(log.redis, Keys(f"{log.keys.prefix}b", log.keys.partitions))
    try:
        await other.check_partitions()
        # A duplicate of its partition (on a cluster a call is a partition's) beside it.
        home = {story: other.keys.partition(story) for story in ("a", "b")}
        names = (f"pad-{i}" for i in range(1000))
        pads = {
            story: encode(update(subject=next(n for n in names if other.keys.partition(n) == p)))
            for story, p in home.items()
        }
        await other.append(list(pads.values()))
        sent = [
            update(subject="a", id="1"),
            update(subject="b", id="2"),
            update(subject="a", id="3"),
            update(subject="a", id="1", data={"title": "sent again"}),  # a duplicate
            update(subject="a", id="4", expectedversion=1),  # a conflict: a is at 2
            update(subject="b", id="5", expectedversion=1),
        ]
        answered: dict[str, list[str | None]] = {}
        for doc in sent:
            [short] = await log.append([encode(doc)])
            answered.setdefault(doc["subject"], []).append(short.position)
            batch, padded = await other.append([encode(doc), pads[doc["subject"]]])
            assert padded.status == "duplicate"
            assert msgspec.structs.replace(short, position=None) == msgspec.structs.replace(
                batch, position=None
            )
            assert (short.position or "").split(":")[0] == (batch.position or "").split(":")[0]
        for story in ("a", "b"):
            ours = [_placeless(r) for r in await log.read_story_json(story)]
            theirs = [_placeless(r) for r in await other.read_story_json(story)]
            assert ours == theirs and len(ours) == 2
            # Each answer names where its update is: a duplicate, its original's.
            stored = [
                r["position"] for r in map(msgspec.json.decode, await log.read_story_json(story))
            ]
            assert [p for p in dict.fromkeys(answered[story]) if p] == stored  # not a conflict's
    finally:
        found = [k async for k in log.redis.scan_iter(match=f"{other.keys.prefix}:*")]
        for key in found:
            await log.redis.delete(key)


def _placeless(raw: bytes) -> dict[str, object]:
    record = msgspec.json.decode(raw)
    del record["position"], record["recordedtime"]
    return dict(record)


async def test_expectedversion_conflict_writes_nothing(log: Log) -> None:
    await log.append([encode(update())])
    [conflict] = await log.append([encode(update(expectedversion=0))])
    assert (conflict.status, conflict.current_version, conflict.field) == (
        "conflict",
        1,
        "expectedversion",
    )
    [ok] = await log.append([encode(update(expectedversion=1))])
    assert (ok.status, ok.version) == ("appended", 2)


async def test_atomic_batch_is_all_or_nothing(log: Log) -> None:
    # Stories of one partition: on a cluster an atomic batch keeps to one
    # (test_cluster_log.py has the refusal).
    home = log.keys.partition("hanoi-summit-2019")
    one, two = [s for s in (f"s-{i}" for i in range(200)) if log.keys.partition(s) == home][:2]
    batch = [
        encode(update(subject=one)),
        encode(update(subject=two)),
        encode(update(expectedversion=5)),
    ]
    results = await log.append(batch, atomic=True)
    assert [r.status for r in results] == ["aborted", "aborted", "conflict"]
    assert await keys_written(log) == []
    invalid = [encode(update()), b"{"]
    assert [r.status for r in await log.append(invalid, atomic=True)] == ["aborted", "invalid"]
    assert await keys_written(log) == []
    ok = await log.append(batch[:2], atomic=True)
    assert [r.status for r in ok] == ["appended", "appended"]


async def test_non_atomic_batch_lands_what_it_can(log: Log) -> None:
    results = await log.append(
        [encode(update()), b"[]", encode(update(expectedversion=0)), encode(update())]
    )
    assert [r.status for r in results] == ["appended", "invalid", "conflict", "appended"]
    assert await log.version("hanoi-summit-2019") == 2


async def test_recordedtime_is_set_by_the_server(log: Log) -> None:
    before = datetime.now(UTC)
    await log.append([encode(update())])
    [record] = await log.read_story("hanoi-summit-2019")
    assert record.recordedtime is not None
    assert abs((record.recordedtime - before).total_seconds()) < 5


async def test_reads_by_version_range_and_recorded_time(log: Log) -> None:
    await log.append([encode(update()) for _ in range(5)])
    middle = await log.read_story("hanoi-summit-2019", from_version=2, to_version=4)
    assert [r.version for r in middle] == [2, 3, 4]
    first = (await log.read_story("hanoi-summit-2019"))[0]
    await asyncio.sleep(0.01)
    await log.append([encode(update())])
    assert first.recordedtime is not None
    as_of = await log.read_story("hanoi-summit-2019", as_of=first.recordedtime)
    assert [r.version for r in as_of] == [1, 2, 3, 4, 5]


async def test_partition_reads_page_in_log_order(log: Log) -> None:
    stories = [f"story-{i}" for i in range(40)]
    await log.append([encode(update(subject=s)) for s in stories])
    seen: list[str] = []
    for p in range(log.keys.partitions):
        after = "0"
        while page := await log.read_partition(p, after=after, count=3):
            seen += [r.subject for _, r in page]
            after = page[-1][0]
    assert sorted(seen) == sorted(stories)


async def test_the_hanoi_story_appends_cleanly(log: Log) -> None:
    lines = [line for line in HANOI.read_bytes().splitlines() if line.strip()]
    results = await log.append(lines)
    assert [r.status for r in results] == ["appended"] * len(lines)
    assert await log.version("hanoi-summit-2019") == HANOI_VERSION
    assert await log.version("cohen-hearing-2019") == 4
    again = await log.append(lines)
    assert {r.status for r in again} == {"duplicate"}


async def test_an_id_used_again_for_other_content_is_a_duplicate_that_says_what_differs(
    log: Log,
) -> None:
    """The contract's answer (a duplicate, the original's version and position), and
    what the feed would not learn from it alone: its new content was not taken."""
    doc = update(id="wire-7", data={"title": "Summit opens", "place": "Hanoi"})
    [original] = await log.append([encode(doc)])
    retried, reordered, reused = await log.append(
        [
            encode(doc),
            msgspec.json.encode(dict(reversed(list(doc.items())))),  # the same, members turned
            encode({**doc, "time": "2019-02-27T19:00:00+07:00", "data": {"title": "Summit ends"}}),
        ]
    )
    assert (retried.differs, retried.reason) == (None, None)
    assert (reordered.differs, reordered.reason) == (None, None)
    assert (reused.status, reused.version, reused.position) == ("duplicate", 1, original.position)
    assert reused.differs == ["data.place", "data.title", "time"]
    assert "differs in data.place, data.title, time" in (reused.reason or "")
    [kept] = await log.read_story(doc["subject"])
    assert kept.data.title == "Summit opens"  # type: ignore[union-attr]


async def test_only_a_batch_with_duplicates_reads_originals(log: Log) -> None:
    """The comparison is a script call of its own, made for a batch holding duplicates
    and for no other: a load with none pays nothing for it."""

    async def calls() -> int:
        found = await script_calls(log.redis)
        return found["eval"] + found["evalsha"]

    before = await calls()
    await log.append([encode(update(subject="one", id=f"fresh-{i}")) for i in range(3)])
    assert await calls() - before == 1  # the append alone
    before = await calls()
    await log.append([encode(update(subject="one", id="fresh-0")), encode(update(subject="one"))])
    assert await calls() - before == 2  # the append, then the originals read


async def test_a_duplicate_inside_its_batch_is_compared_with_the_first(log: Log) -> None:
    first, second = await log.append(
        [encode(update(id="twice")), encode(_retitled(update(id="twice"), "other"))]
    )
    assert (first.status, second.status) == ("appended", "duplicate")
    assert second.differs == ["data.title"] and second.position == first.position


async def test_a_bulk_load_sent_again_with_one_id_reused_names_that_one(log: Log) -> None:
    docs = [update(id=f"bulk-{i}") for i in range(5)]
    async for _ in log.append_stream([[encode(d) for d in docs]]):
        pass
    docs[3] = _retitled(docs[3], "not the third")
    answers = [r async for batch in log.append_stream([[encode(d) for d in docs]]) for r in batch]
    assert [r.status for r in answers] == ["duplicate"] * 5
    assert [r.differs for r in answers] == [None, None, None, ["data.title"], None]


async def test_a_bulk_load_goes_on_while_a_batch_is_compared_and_is_answered_in_order(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one batch's duplicates are read back, the batches after it are prepared and
    sent (a retry of a whole load: 0.58x the load not compared, compared in turn); each
    batch's answers still come in the order of the batches."""
    if log.cluster:
        pytest.skip("on a cluster append_stream appends batch after batch, each as append")
    first = [update(id=f"old-{i}") for i in range(2)]
    await log.append([encode(d) for d in first])
    batches = [
        [encode(first[0])],
        *[[encode(update(id=f"new-{i}"))] for i in range(4)],
        [encode(_retitled(first[1], "other"))],
    ]
    prepared, fourth = 0, asyncio.Event()
    real_prepare, real_read = log.prepare, log._read_originals

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal prepared
        prepared += 1
        if prepared == 4:
            fourth.set()
        return real_prepare(*args, **kwargs)

    async def after_the_fourth(*args: Any, **kwargs: Any) -> Any:
        # The first batch's answers are read once the third is sent (`AHEAD`): a stream
        # that waited for its comparison before preparing the fourth would time out here.
        await asyncio.wait_for(fourth.wait(), 5)
        return await real_read(*args, **kwargs)

    monkeypatch.setattr(log, "prepare", counted)
    monkeypatch.setattr(log, "_read_originals", after_the_fourth)
    answers = [batch async for batch in log.append_stream(batches)]
    assert [[r.status for r in b] for b in answers] == [
        ["duplicate"],
        *[["appended"]] * 4,
        ["duplicate"],
    ]
    assert [b[0].id for b in answers] == ["old-0", *[f"new-{i}" for i in range(4)], "old-1"]
    assert [b[0].differs for b in answers] == [None] * 5 + [["data.title"]]


def _retitled(doc: dict[str, Any], title: str) -> dict[str, Any]:
    return {**doc, "data": {**doc["data"], "title": title}}


async def test_duplicates_not_compared_are_still_answered_and_the_reason_logged(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that refuses the read of the originals (a user whose ACL lacks XREVRANGE):
    the duplicates' answers stand, without what differs, and a warning says why."""
    doc = update(id="unread")
    await log.append([encode(doc)])

    async def refused(*_: object, **__: object) -> object:
        raise ResponseError("NOPERM User ingest has no permissions to run the 'xrevrange' command")

    monkeypatch.setattr(log, "_read_originals", refused)
    with capture_logs() as logs:
        [again] = await log.append([encode(_retitled(doc, "other"))])
    assert (again.status, again.version, again.differs) == ("duplicate", 1, None)
    [warned] = [e for e in logs if e["event"] == "duplicates not compared with their originals"]
    assert "NOPERM" in warned["error"] and warned["duplicates"] == 1
