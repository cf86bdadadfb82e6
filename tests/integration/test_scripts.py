"""Each server-side script on its own, on both servers (Valkey 8.1 and Redis 6.2).

The scripts are also run by everything above them; these tests pin each one's KEYS,
ARGV and reply as its header documents them, so that a change to one shows here first.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from dateline.projector.commit import script_args
from dateline.store import scripts
from dateline.store.layout import GroupKeys, SubscriptionKeys
from dateline.store.log import Log
from dateline.store.pages import MARK
from dateline.store.readmodels import Command, ReadModels
from tests.factories import encode, update
from tests.raw import entries_of, script_calls, text

INCLUDED_ONLY = {"whole_story", "advance", "subject", "older"}
"""Functions other scripts include; each is run through every script that includes it."""
TESTED = {
    "append",
    "newest",
    "recall",
    "read_story",
    "commit",
    "settle",
    "settled",
    "acked",
    "heads",
    "lease_renew",
    "lease_release",
    "heartbeat",
    "applied",
    "parked_at",
    "story",
    "fanout",
    "hold",
    "refan",
    "originals",
}


def test_every_script_has_a_test_here_and_a_header() -> None:
    assert set(scripts.names()) == TESTED | INCLUDED_ONLY
    for name in scripts.names():
        text = scripts.load(name)
        header = text.split("\n\n")[0]
        assert header.startswith("-- "), name
        if name not in INCLUDED_ONLY:
            for part in ("KEYS", "ARGV", "Returns"):
                assert re.search(rf"^-- {part}", header, re.MULTILINE), (name, part)


def test_the_loader_puts_an_include_in_place_once() -> None:
    text = scripts.load("commit")
    assert "-- include:" not in text
    assert text.count("local function advance(") == 1
    assert text.count("local function older(") == 1


def test_scripts_read_json_with_cjson_not_patterns() -> None:
    for name in scripts.names():
        text = scripts.load(name)
        assert '"subject"' not in text and 'subject":' not in text, name
    assert "cjson.decode" in scripts.load("applied")
    assert "cjson.decode" in scripts.load("parked_at")


def _run(log: Log, name: str) -> scripts.Script:
    return scripts.bound(log.redis, name)


async def test_a_script_the_server_lost_runs_by_its_text_in_one_command(log: Log) -> None:
    """Where the server lost a script (restarted, flushed), the call sends its text, which
    loads it as it runs: one command, with no moment in which a restart could lose it
    again. redis-py's script object loaded it (`SCRIPT LOAD`) and then called it, and a
    server restarted between the two answered the call `NOSCRIPT` (a chaos run: a feed's
    append answered 500)."""
    members = GroupKeys(log.keys.prefix, "g").members
    beat = _run(log, "heartbeat")
    await log.redis.script_flush()
    before = await script_calls(log.redis)
    assert await beat(keys=[members], args=["a", 60_000]) == 1
    after = await script_calls(log.redis)
    assert {k: after[k] - before[k] for k in after} == {"eval": 1, "evalsha": 1, "script": 0}
    assert await beat(keys=[members], args=["b", 60_000]) == 2  # held now: by its digest
    again = await script_calls(log.redis)
    assert {k: again[k] - after[k] for k in after} == {"eval": 0, "evalsha": 1, "script": 0}


async def test_an_append_the_server_lost_the_script_of_is_sent_by_its_text(log: Log) -> None:
    await log.append([encode(update(id="u1"))])
    await log.redis.script_flush()
    before = await script_calls(log.redis)
    [result] = await log.append([encode(update(id="u2"))])
    assert (result.status, result.version) == ("appended", 2)
    after = await script_calls(log.redis)
    assert after["eval"] - before["eval"] == 1
    assert after["script"] == before["script"]


async def _appended(log: Log, *docs: dict[str, Any]) -> list[str]:
    results = await log.append([encode(d) for d in docs])
    return [r.position or "" for r in results]


async def test_append(log: Log) -> None:
    """Through `Log.prepare`'s keys and arguments: version 1, then a duplicate."""
    doc = update()
    prepared = log.prepare([encode(doc)], atomic=False)
    reply = await log.redis.eval(
        scripts.load("append"), len(prepared.keys), *prepared.keys, *prepared.args
    )
    kind, version, position = reply.split(b" ")
    assert (kind, version) == (b"a", b"1")
    again = await log.redis.eval(
        scripts.load("append"), len(prepared.keys), *prepared.keys, *prepared.args
    )
    assert again == b"d 1 " + position + b" " + doc["subject"].encode()


async def _both_shapes(log: Log, story: str, *, atomic: bool) -> tuple[bytes, list[Any]]:
    """A batch of one story, run twice on stories alike: (its text, its tables)."""
    replies: list[Any] = []
    for shape in ("text", "tables"):
        first = update(subject=f"{story}-{shape}", id="s0")
        await log.append([encode(first)])
        batch = [
            encode(first),  # a duplicate of the log's
            encode(update(subject=f"{story}-{shape}", id="s1")),
            encode(update(subject=f"{story}-{shape}", id="s1")),  # of this batch's
            encode(update(subject=f"{story}-{shape}", id="s2", expectedversion=0)),
            encode(update(subject=f"{story}-{shape}", id="s3")),
        ]
        prepared = log.prepare(batch, atomic=atomic)
        assert prepared.args[3:] == ["1", "0"]  # text asked for; two updates share a field
        args = prepared.args if shape == "text" else prepared.args[:3]
        replies.append(
            await log.redis.eval(scripts.load("append"), len(prepared.keys), *prepared.keys, *args)
        )
    return replies[0], replies[1]


@pytest.mark.parametrize("atomic", [False, True])
async def test_append_answers_as_text_or_as_tables_alike(log: Log, atomic: bool) -> None:
    """ARGV[4] asks for the replies as lines of one text; without it (a client of an
    older release), a table each. Both say the same of each kind of reply."""
    text, tables = await _both_shapes(log, f"shapes-{int(atomic)}", atomic=atomic)
    lines = text.split(b"\n")
    kinds = [line[:1] for line in lines]
    if atomic:
        assert kinds == [b"d", b"x", b"x", b"c", b"x"]
    else:
        assert kinds == [b"d", b"a", b"d", b"c", b"a"]
    names = {b"a": b"appended", b"d": b"duplicate", b"c": b"conflict", b"x": b"aborted"}
    assert [names[k] for k in kinds] == [t[0] for t in tables]
    for line, table in zip(lines, tables, strict=True):
        said = line.split(b" ", 1)[1:]
        match line[:1]:
            case b"a":
                version, position = said[0].split(b" ")
                assert int(version) == table[1]
                assert re.fullmatch(rb"\d+:\d+-\d+", position) and re.fullmatch(
                    rb"\d+:\d+-\d+", table[2]
                )
            case b"d":  # "version position story", the story's name apart
                assert said[0].split(b" ")[0] == table[1].split(b" ")[0]
                assert said[0].endswith(b"-text") and table[1].endswith(b"-tables")
            case b"c":
                assert said == [b"2"] and table[1] == 2  # counting this batch's s1
            case _:
                assert said == [] and table == [b"aborted"]
    if not atomic:  # the duplicate of this batch's update names it
        _, version, position = lines[1].split(b" ")
        assert lines[2] == b"d " + version + b" " + position + b" shapes-0-text"


async def test_append_is_told_when_a_batch_repeats_no_field(log: Log) -> None:
    """ARGV[5] says the batch's dedup fields are distinct, and only when they are: the
    script then keeps no table of them."""
    apart = [encode(update(subject="fields", id=f"f{i}")) for i in range(3)]
    assert log.prepare(apart, atomic=False).args[4] == "1"
    assert log.prepare([*apart, apart[0]], atomic=False).args[4] == "0"
    results = await log.append([*apart, apart[1]])
    assert [(r.status, r.version) for r in results] == [
        ("appended", 1),
        ("appended", 2),
        ("appended", 3),
        ("duplicate", 2),
    ]


async def test_recall(log: Log) -> None:
    models = ReadModels(log.keys, "vt")
    await log.redis.set(models.story("a"), b'{"id":"a","statements":{}}')
    await log.redis.rpush(models.statements("a"), b'"s1":{"text":"x"}')
    await log.redis.hset(models.merge_keys("a"), "k", "s1")
    reply = await _run(log, "recall")(keys=models.recall_keys(["a", "none"]))
    assert reply == [[b'{"id":"a","statements":{}}', [b'"s1":{"text":"x"}'], [b"k", b"s1"]], []]


async def test_read_story(log: Log) -> None:
    """The statements spliced in; a state of an older shape as stored; none: false."""
    models = ReadModels(log.keys, "vt")
    read = _run(log, "read_story")
    await log.redis.set(models.story("a"), b'{"id":"a","statements":{},"v":1}')
    await log.redis.rpush(models.statements("a"), b'"s1":{"t":1}', b'"s2":{"t":2}')
    whole = await read(keys=[models.story("a"), models.statements("a")])
    assert whole == b'{"id":"a","statements":{"s1":{"t":1},"s2":{"t":2}},"v":1}'
    await log.redis.set(models.story("b"), b'{"id":"b","statements":{"s":{}}}')
    assert await read(keys=[models.story("b"), models.statements("b")]) == (
        b'{"id":"b","statements":{"s":{}}}'
    )
    assert await read(keys=[models.story("c"), models.statements("c")]) is None


async def _delivered(log: Log, group: str, count: int) -> list[tuple[bytes, Any]]:
    stream = log.keys.log(0)
    await log.redis.xgroup_create(stream, group, id="0", mkstream=True)
    reply = await log.redis.xreadgroup(group, "c", {stream: ">"}, count=count)
    assert isinstance(reply, list)  # RESP2: [[stream, entries]]
    return entries_of(reply[0][1]) if reply else []


async def test_older_compares_stream_ids_as_numbers(log: Log) -> None:
    """The function `advance` and `fanout` include: milliseconds, then sequence."""
    pairs = [
        ("9-0", "10-0"),
        ("5-9", "5-10"),
        ("1764670000000-3", "1764670000001-0"),
        ("1764670000000-12", "1764670000000-3"),
        ("99-5", "100-0"),
        ("7-7", "7-7"),
        ("10-0", "9-99"),
    ]
    check = log.redis.register_script(
        scripts.load("older")
        + "\nlocal out = {}\n"
        + "for i = 1, #ARGV, 2 do out[#out + 1] = older(ARGV[i], ARGV[i + 1]) and 1 or 0 end\n"
        + "return out"
    )
    got = await check(args=[id_ for pair in pairs for id_ in pair])
    assert got == [1, 1, 1, 0, 1, 0, 0]


def _advance(models: ReadModels, log: Log, group: str, delivered: str = "") -> list[str]:
    checkpoints, stream = models.region(0).checkpoint, log.keys.log(0)
    return [checkpoints, "0", stream, group, "PUBLISH", models.changes, delivered]


@pytest.mark.parametrize("packed_words", [1_000, 0], ids=["words packed", "word by word"])
async def test_commit(log: Log, packed_words: int) -> None:
    """Writes and acks and moves the checkpoint, or, fenced, writes nothing; its words
    packed in one argument (a small commit) or an argument each (a large one)."""
    models = ReadModels(log.keys, "vt")
    stream = log.keys.log(0)
    for i in range(3):
        await log.redis.xadd(stream, {"__data__": f"r{i}"})
    entries = await _delivered(log, "g", 3)
    commit = _run(log, "commit")
    ids = [eid for eid, _ in entries]
    # The expected state SHA-1 (none stored: ""), the commands' lengths, then their
    # words (`script_args`): text, bytes and numbers.
    score = 1551312000.123456  # 16 digits: the score must arrive as it is, not as %.14g
    commands: list[Command] = [
        ("SET", models.story("a"), b"state"),
        ("ZADD", models.story("z"), score, "m", 2, "n"),
        ("XACK", stream, "g", *ids),
        ("ADVANCE", *_advance(models, log, "g")),
    ]
    args = script_args([""], commands, packed_words)
    assert len(args) == (3 if packed_words else 2 + sum(map(len, commands)))
    async with log.redis.pubsub() as pubsub:
        await pubsub.subscribe(models.changes)
        assert await commit(keys=[models.story("a")], args=args) == 0
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                break
    assert await log.redis.get(models.story("a")) == b"state"
    assert await log.redis.zrange(models.story("z"), 0, -1, withscores=True) == [
        (b"n", 2.0),
        (b"m", score),
    ]
    assert (await log.redis.xpending(stream, "g"))["pending"] == 0
    assert await log.redis.hget(models.region(0).checkpoint, "0") == ids[-1]
    assert message is not None and message["data"] == b"0:" + ids[-1]
    # The fence: the stored state is not the one expected (empty): nothing written.
    moved = await commit(
        keys=[models.story("a")],
        args=script_args([""], [("SET", models.story("a"), "x")], packed_words),
    )
    assert moved == 1 and await log.redis.get(models.story("a")) == b"state"


async def test_settle(log: Log) -> None:
    """The checkpoint goes up to what was acknowledged, never past an entry still pending."""
    models = ReadModels(log.keys, "vt")
    stream = log.keys.log(0)
    for i in range(3):
        await log.redis.xadd(stream, {"__data__": f"r{i}"})
    ids = [eid for eid, _ in await _delivered(log, "g", 3)]
    await log.redis.xack(stream, "g", ids[0])  # the second waits for a retry
    await _run(log, "settle")(args=_advance(models, log, "g"))
    assert await log.redis.hget(models.region(0).checkpoint, "0") == ids[0]
    await log.redis.xack(stream, "g", ids[1], ids[2])
    await _run(log, "settle")(args=_advance(models, log, "g"))
    assert await log.redis.hget(models.region(0).checkpoint, "0") == ids[2]


async def test_advance_takes_how_far_the_caller_was_delivered_for_the_groups_word(
    log: Log,
) -> None:
    """Given the last entry its reads returned, advance() goes no further than that (the
    group delivered more, to the caller's next read) and still stops before an entry
    pending; given "", it asks the group."""
    models = ReadModels(log.keys, "vt")
    stream = log.keys.log(0)
    for i in range(4):
        await log.redis.xadd(stream, {"__data__": f"r{i}"})
    ids = [eid.decode() for eid, _ in await _delivered(log, "g", 4)]
    await log.redis.xack(stream, "g", *ids)
    settle = _run(log, "settle")
    await settle(args=_advance(models, log, "g", ids[1]))
    assert await log.redis.hget(models.region(0).checkpoint, "0") == ids[1].encode()
    fifth = await log.redis.xadd(stream, {"__data__": "r4"})
    await log.redis.xreadgroup("g", "c", {stream: ">"}, count=1)
    await settle(args=_advance(models, log, "g", text(fifth)))  # told further: pending
    assert await log.redis.hget(models.region(0).checkpoint, "0") == ids[3].encode()
    await log.redis.xack(stream, "g", fifth)
    await settle(args=_advance(models, log, "g"))
    assert await log.redis.hget(models.region(0).checkpoint, "0") == fifth


async def test_settled_says_how_far_a_partition_is_settled_and_writes_nothing(
    log: Log,
) -> None:
    """What advance() would move the checkpoint to, on a log whose read models are in a
    store of their own: never past a pending entry; false while nothing is settled."""
    stream = log.keys.log(0)
    empty = log.keys.log(1)
    for i in range(3):
        await log.redis.xadd(stream, {"__data__": f"r{i}"})
    ids = [eid for eid, _ in await _delivered(log, "g", 3)]
    await log.redis.xgroup_create(empty, "g", id="0", mkstream=True)
    settled = _run(log, "settled")
    await log.redis.xack(stream, "g", ids[0])
    assert await settled(args=[stream, "g", "", empty, "g", ""]) == [ids[0], None]
    await log.redis.xack(stream, "g", ids[1], ids[2])
    assert await settled(args=[stream, "g", ""]) == [ids[2]]
    assert await settled(args=[stream, "g", text(ids[1])]) == [ids[1]]
    assert not [k async for k in log.redis.scan_iter(match=f"{log.keys.prefix}:rm:*")]


async def test_acked_acknowledges_then_says_how_far_the_partition_is_settled(
    log: Log,
) -> None:
    """On a log on a cluster, after a commit to a store apart: the XACK and `settled`
    in one call. Nothing acknowledged (no ids) says how far as it is."""
    stream = log.keys.log(0)
    for i in range(3):
        await log.redis.xadd(stream, {"__data__": f"r{i}"})
    ids = [eid for eid, _ in await _delivered(log, "g", 3)]
    acked = _run(log, "acked")
    assert await acked(keys=[stream], args=["g"]) is None  # all three pending
    assert await acked(keys=[stream], args=["g", ids[0], ids[2]]) == ids[0]  # ids[1] holds it
    assert (await log.redis.xpending(stream, "g"))["pending"] == 1
    assert await acked(keys=[stream], args=["g", ids[1]]) == ids[2]
    assert not [k async for k in log.redis.scan_iter(match=f"{log.keys.prefix}:rm:*")]


async def test_commit_moves_a_checkpoint_it_is_given_and_checks_one_it_expects(
    log: Log,
) -> None:
    """CHECKPOINT: never backwards, announced. EXPECT: a checkpoint behind the one named
    (the store lost writes) makes the commit write nothing and answer -1."""
    models = ReadModels(log.keys, "vt")
    checkpoints = models.region(0).checkpoint
    commit = _run(log, "commit")

    def move(to: str) -> Command:
        return ("CHECKPOINT", checkpoints, "0", to, "PUBLISH", models.changes)

    async with log.redis.pubsub() as pubsub:
        await pubsub.subscribe(models.changes)
        assert await commit(keys=[], args=script_args([], [move("5-1")])) == 0
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                break
    assert message is not None and message["data"] == b"0:5-1"
    assert await commit(keys=[], args=script_args([], [move("4-9")])) == 0
    assert await log.redis.hget(checkpoints, "0") == b"5-1"  # not backwards
    expect: Command = ("EXPECT", checkpoints, "0", "5-1")
    write: Command = ("SET", models.story("a"), "x")
    assert await commit(keys=[], args=script_args([], [expect, write, move("6-0")])) == 0
    assert await log.redis.get(models.story("a")) == b"x"
    behind: Command = ("EXPECT", checkpoints, "0", "7-0")
    again: Command = ("SET", models.story("a"), "y")
    assert await commit(keys=[], args=script_args([], [behind, again, move("8-0")])) == -1
    assert await log.redis.get(models.story("a")) == b"x"
    assert await log.redis.hget(checkpoints, "0") == b"6-0"
    missing: Command = ("EXPECT", models.region(1).checkpoint, "1", "1-0")
    assert await commit(keys=[], args=script_args([], [missing, again])) == -1


async def test_heads_reads_a_field_of_each_hash_in_one_reply(log: Log) -> None:
    """A checkpoint a partition, or an index entry a story: false where there is none."""
    models = ReadModels(log.keys, "vt")
    one, two = models.region(0).checkpoint, models.region(1).checkpoint
    await log.redis.hset(one, "0", "5-1")
    await log.redis.hset(models.region(0).index, "a", "{}")
    keys, fields = [one, two, models.region(0).index], ["0", "1", "a"]
    assert await _run(log, "heads")(keys=keys, args=fields) == [b"5-1", None, b"{}"]


async def test_originals_reads_each_record_at_its_stream_id_in_one_reply(log: Log) -> None:
    """A record a pair of key and id, in the order asked; a null where none is."""
    a, b = await log.append([encode(update(subject="x")), encode(update(subject="y"))])
    where = {r.position.split(":")[0] for r in (a, b) if r.position}
    keys = [log.keys.log(int(p)) for p in sorted(where)]
    args: list[str] = []
    for r in (b, a):
        part, entry = (r.position or "").split(":")
        args += (str(sorted(where).index(part) + 1), entry)
    args += ("1", "1-1")  # no entry there
    got = await _run(log, "originals")(keys=keys, args=args)
    assert [msgspec.json.decode(r)["id"] if r else r for r in got] == [b.id, a.id, None]


async def test_lease_renew_and_release(log: Log) -> None:
    """Only the holder renews or releases."""
    lease = GroupKeys(log.keys.prefix, "g").partition_lease(0)
    renew, release = _run(log, "lease_renew"), _run(log, "lease_release")
    await log.redis.set(lease, "me", px=1000)
    assert await renew(keys=[lease], args=["other", 60_000]) == 0
    assert await renew(keys=[lease], args=["me", 60_000]) == 1
    assert await log.redis.pttl(lease) > 1000
    assert await release(keys=[lease], args=["other"]) == 0
    assert await release(keys=[lease], args=["me"]) == 1
    assert await log.redis.exists(lease) == 0


test_lease_renew = test_lease_release = test_lease_renew_and_release


async def test_heartbeat(log: Log) -> None:
    """Counts the live members, dropping those whose heartbeat ran out."""
    members = GroupKeys(log.keys.prefix, "g").members
    beat = _run(log, "heartbeat")
    assert await beat(keys=[members], args=["a", 60_000]) == 1
    assert await beat(keys=[members], args=["b", 60_000]) == 2
    await log.redis.zadd(members, {"dead": 1})  # ran out in 1970
    assert await beat(keys=[members], args=["a", 60_000]) == 2
    assert await log.redis.zscore(members, "dead") is None


async def test_fanout(log: Log) -> None:
    """Adds what is past the partition's mark, in order, and moves the mark; stream ids
    are compared as numbers; a tombstone with the subscription's stamp stops it."""
    keys = SubscriptionKeys(log.keys.prefix, "s")
    fan = _run(log, "fanout")
    on = [keys.outbox, keys.marks, keys.removed]

    def entries(*ids: str, partition: int = 3) -> list[str]:
        return [word for i in ids for word in (i, "a-story", f"{partition}:{i}", f"record {i}")]

    assert await fan(keys=on, args=["1.5", 3, *entries("9-0", "9-1")]) == 2
    assert await log.redis.hget(keys.marks, "3") == b"9-1"
    assert await fan(keys=on, args=["1.5", 3, *entries("9-1", "10-0")]) == 1  # not "9-1" again
    assert (
        await fan(keys=on, args=["1.5", 4, *entries("2-0", partition=4)]) == 1
    )  # a partition of its own
    assert await log.redis.hgetall(keys.marks) == {b"3": b"10-0", b"4": b"2-0"}
    outbox = entries_of(await log.redis.xrange(keys.outbox))
    assert [f[b"position"] for _, f in outbox] == [b"3:9-0", b"3:9-1", b"3:10-0", b"4:2-0"]
    assert outbox[0][1] == {b"story": b"a-story", b"position": b"3:9-0", b"record": b"record 9-0"}
    await log.redis.set(keys.removed, "1.5")
    assert await fan(keys=on, args=["1.5", 3, *entries("11-0")]) == 0  # removed
    assert await fan(keys=on, args=["2.5", 3, *entries("11-0")]) == 1  # another one, added anew


async def test_hold(log: Log) -> None:
    """Notes the ids past the partition's mark (all, with none), by position; stream ids
    compared as numbers; a tombstone with the subscription's stamp stops it."""
    keys = SubscriptionKeys(log.keys.prefix, "s")
    hold = _run(log, "hold")
    on = [keys.marks, keys.held, keys.removed]
    assert await hold(keys=on, args=["1.5", 4, "3-0"]) == 1  # no mark yet: lacks it
    await log.redis.hset(keys.marks, "3", "9-5")
    assert await hold(keys=on, args=["1.5", 3, "9-4", "9-5", "9-10", "10-0"]) == 2
    assert sorted(await log.redis.hkeys(keys.held)) == [b"3:10-0", b"3:9-10", b"4:3-0"]
    await log.redis.set(keys.removed, "1.5")
    assert await hold(keys=on, args=["1.5", 3, "11-0"]) == 0
    assert await log.redis.hlen(keys.held) == 3


async def test_refan(log: Log) -> None:
    """Adds the held ones alone, in the order given, each once, whatever the mark; a
    tombstone with the subscription's stamp stops it."""
    keys = SubscriptionKeys(log.keys.prefix, "s")
    refan = _run(log, "refan")
    on = [keys.outbox, keys.held, keys.removed]
    await log.redis.hset(keys.held, mapping={"3:9-0": 1, "3:9-2": 1, "3:9-3": 1})
    await log.redis.hset(keys.marks, "3", "20-0")

    def entries(*ids: str) -> list[str]:
        return [word for i in ids for word in (f"3:{i}", "a-story", f"record {i}")]

    assert await refan(keys=on, args=["1.5", *entries("9-0", "9-1", "9-2")]) == 2
    assert await refan(keys=on, args=["1.5", *entries("9-0", "9-1", "9-2")]) == 0  # once
    outbox = entries_of(await log.redis.xrange(keys.outbox))
    assert [f for _, f in outbox] == [
        {b"story": b"a-story", b"position": b"3:9-0", b"record": b"record 9-0"},
        {b"story": b"a-story", b"position": b"3:9-2", b"record": b"record 9-2"},
    ]
    assert await log.redis.hget(keys.marks, "3") == b"20-0"  # neither asked nor moved
    await log.redis.set(keys.removed, "1.5")
    assert await refan(keys=on, args=["1.5", *entries("9-3")]) == 0
    assert await log.redis.hkeys(keys.held) == [b"3:9-3"]


def _applied_keys(models: ReadModels, log: Log) -> list[str]:
    """Each partition's checkpoints, index and log, as `applied.lua` takes them."""
    return [
        key
        for p in range(log.keys.partitions)
        for key in (models.region(p).checkpoint, models.region(p).index, log.keys.log(p))
    ]


async def test_applied(log: Log) -> None:
    """Entries up to the checkpoint only, the stories they name once each with their
    index entries, and an entry that is no update passed over, not failed on."""
    models = ReadModels(log.keys, "vt")
    keys = log.keys
    a, b = update(subject="story-a"), update(subject="story-b")
    positions = await _appended(log, a, b)
    partitions = {int(p.split(":")[0]) for p in positions}
    for p in range(keys.partitions):
        await log.redis.xadd(keys.log(p), {"__data__": "not json"})
        last = entries_of(await log.redis.xrevrange(keys.log(p), count=1))[0][0]
        await log.redis.hset(models.region(p).checkpoint, str(p), last)
    await log.redis.hset(models.region_of("story-a").index, "story-a", b'{"id":"story-a"}')
    script_keys = _applied_keys(models, log)
    pages, stories, entries = await _run(log, "applied")(
        keys=script_keys, args=[10, *["0-0"] * keys.partitions]
    )
    # Each partition's junk entry is read and named no story; the updates name theirs.
    assert sum(len(rows) for rows in pages) == len(partitions) + keys.partitions
    assert sorted(stories) == [b"story-a", b"story-b"] and len(pages) == keys.partitions
    found = dict(zip(stories, entries, strict=True))
    assert found == {b"story-a": b'{"id":"story-a"}', b"story-b": None}
    # Nothing past a checkpoint: with none, a partition reads nothing.
    await log.redis.delete(*[r.checkpoint for r in models.regions])
    pages, stories, _ = await _run(log, "applied")(
        keys=script_keys, args=[10, *["0-0"] * keys.partitions]
    )
    assert all(rows == [] for rows in pages) and stories == []


async def test_parked_at(log: Log) -> None:
    models = ReadModels(log.keys, "vt")
    parked = GroupKeys(log.keys.prefix, models.group).parked
    [position] = await _appended(log, update(subject="story-p"))
    partition, at = position.split(":")
    keys = [log.keys.log(int(partition)), parked]
    assert await _run(log, "parked_at")(keys=keys, args=[at]) == [b"story-p", None]
    await log.redis.hset(parked, "story-p", position)
    assert await _run(log, "parked_at")(keys=keys, args=[at]) == [b"story-p", position.encode()]
    assert await _run(log, "parked_at")(keys=keys, args=["1-1"]) is None
    junk = await log.redis.xadd(keys[0], {"__data__": "[1,2]"})
    assert await _run(log, "parked_at")(keys=keys, args=[junk]) is None


async def test_story(log: Log) -> None:
    """The state whole, where it is parked, and the records asked for (none if last < first)."""
    models = ReadModels(log.keys, "vt")
    parked = GroupKeys(log.keys.prefix, models.group).parked
    await _appended(
        log, update(subject="story-s"), update("dateline.story.concluded", subject="story-s")
    )
    await log.redis.set(models.story("story-s"), b'{"id":"story-s","statements":{}}')
    await log.redis.hset(parked, "story-s", "0:1-0")
    keys = [
        models.story("story-s"),
        models.statements("story-s"),
        parked,
        log.keys.story("story-s"),
    ]
    state, where, records = await _run(log, "story")(keys=keys, args=["story-s", 1, 1])
    assert state == b'{"id":"story-s","statements":{}}' and where == b"0:1-0"
    assert len(records) == 1 and b"story.concluded" in records[0]
    _, _, none = await _run(log, "story")(keys=keys, args=["story-s", 2, 1])
    assert none == []


async def test_applied_reads_at_most_256_a_partition_whatever_is_asked(log: Log) -> None:
    models = ReadModels(log.keys, "vt")
    keys = log.keys
    for _ in range(300):
        last = await log.redis.xadd(keys.log(0), {"__data__": "{}"})
    await log.redis.hset(models.region(0).checkpoint, "0", last)
    script_keys = _applied_keys(models, log)
    pages, _, _ = await _run(log, "applied")(
        keys=script_keys, args=[10**9, *["0-0"] * keys.partitions]
    )
    assert len(pages[0]) == 256


async def test_newest(log: Log) -> None:
    """The regions' newest merged by score, then member, from the highest; a story not
    in its index left out; at most 256 whatever is asked."""
    models = ReadModels(log.keys, "vt")
    newest = _run(log, "newest")
    keys = [key for r in models.regions for key in (r.index_by_time, r.index)]
    scores = {f"s{n:03d}": float(n // 3) for n in range(300)}  # ties, across partitions
    for story, score in scores.items():
        region = models.region_of(story)
        await log.redis.zadd(region.index_by_time, {story: score})
        if story != "s299":
            await log.redis.hset(region.index, story, story)
    ranked = sorted(((s, m) for m, s in scores.items()), reverse=True)
    # The 5 newest, s299 (not in its index) left out, not replaced: as the merge here does.
    assert await newest(keys=keys, args=[5]) == [m.encode() for _, m in ranked[1:5]]
    assert len(await newest(keys=keys, args=[10_000])) == 256 - 1  # 256 taken, s299 left out
    one = [models.regions[0].index_by_time, models.regions[0].index]
    mine = [m.encode() for _, m in ranked if models.region_of(m) == models.regions[0]]
    assert await newest(keys=one, args=[3]) == [m for m in mine[:3] if m != b"s299"]


async def test_advance_carries_a_page_only_where_the_checkpoint_moves_as_far_as_it_ends(
    log: Log,
) -> None:
    """A page ends where the runner was delivered: an entry the group still holds keeps
    the checkpoint short of it, and the message goes without the page."""
    models = ReadModels(log.keys, "vp")
    stream = log.keys.log(0)
    for i in range(4):
        await log.redis.xadd(stream, {"__data__": f"r{i}"})
    ids = [eid.decode() for eid, _ in await _delivered(log, "g", 4)]
    await log.redis.xack(stream, "g", ids[0], ids[1], ids[3])  # the third waits
    commit = _run(log, "commit")

    def advance(after: str) -> tuple[str, ...]:
        return ("ADVANCE", *_advance(models, log, "g", ids[3]), "s1", after, "PAGE")

    async with log.redis.pubsub() as pubsub:
        await pubsub.subscribe(models.changes)
        await log.redis.hset(models.region(0).checkpoint, "0", ids[0])
        assert await commit(keys=[], args=script_args([], [advance(ids[0])])) == 0
        await log.redis.xack(stream, "g", ids[2])
        assert await commit(keys=[], args=script_args([], [advance(ids[1])])) == 0
        heard = [
            msg["data"]
            for _ in range(10)
            if (msg := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05))
        ]
    assert heard == [f"0:{ids[1]} s1".encode(), f"0:{ids[3]} s1".encode() + MARK + b"PAGE"]
