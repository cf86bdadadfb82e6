"""A log in a file and back (`dateline backup`, `dateline restore`, `store/backup.py`), on
real servers: what a restore brings back (histories, versions, recorded times, dedup
entries, feeds, readers, subscriptions, inboxes), a cut taken while appends go on, a
sealed log, a cluster, and the commands as an operator runs them."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import secrets
import subprocess
import uuid
from pathlib import Path
from typing import cast

import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from dateline.deliver.fanout import route
from dateline.domain.positions import Position, stream_id
from dateline.ingest.credentials import Credentials
from dateline.kit import LogEntry
from dateline.store import backup, migrate, owed
from dateline.store.cluster import LocalCluster
from dateline.store.connection import open_client
from dateline.store.layout import DELIVER_GROUP, Keys, inbox_key, rejected_key
from dateline.store.log import Log
from dateline.store.seal import Sealing, opened, seal_log, sealing_key
from dateline.store.subscriptions import Parked, Subscriptions
from tests.e2e.processes import DATELINE
from tests.factories import encode, update
from tests.integration.conftest import hanoi_in
from tests.projection_helpers import HANOI
from tests.raw import entries_of


async def _backed_up(log: Log, path: Path, key: bytes | None = None) -> backup.Written:
    with path.open("wb") as out:
        return await backup.write(log.redis, log.sealing, out, source="a test", key=key)


async def _restored(path: Path, target: aioredis.Redis, to: Keys, key: bytes | None = None) -> None:
    checked = backup.verify(path, key)
    await migrate.check_empty(target, to)
    await Log(target, to).check_partitions()
    done = await backup.restore(path, checked, target, to)
    assert await migrate.check(target, to, done.checks) == []


async def _histories(log: Log, stories: list[str]) -> dict[str, list[tuple[str, int, str]]]:
    out = {}
    for story in stories:
        records = [msgspec.json.decode(r) for r in await log.read_story_json(story)]
        out[story] = [(r["id"], r["version"], r["recordedtime"]) for r in records]
    return out


async def _cleared(client: aioredis.Redis, prefix: str) -> None:
    async for key in client.scan_iter(match=f"{prefix}:*"):
        await client.delete(key)
    await client.aclose()


async def test_a_restore_brings_back_the_log_and_what_goes_with_it(
    source: Log, redis_url: str, tmp_path: Path
) -> None:
    """Hanoi, a feed, a reader, a subscription, a feed's inbox and a fan-out, backed up
    and restored under another prefix with twice the partitions: each story's history
    with its versions and recorded times, a feed's retry still a duplicate, the tokens
    and the signing secret working, the inbox entry for entry, and delivery starting
    after the restored history."""
    stories = await hanoi_in(source)
    prefix = source.keys.prefix
    token = await Credentials(source.redis, prefix).add("wire-a", "urn:feed:test")
    inbox = inbox_key(prefix, "wire-a")
    sent = [
        await source.redis.xadd(inbox, {"update": encode(update(id=f"i{n}"))}) for n in range(2)
    ]
    sent.append(await source.redis.xadd(inbox, {"update": b"\xff\xfe not UTF-8"}))  # for rejected
    _, secret = await Subscriptions(source.redis, source.keys).add(
        "https://cms.example.org/hooks", name="cms"
    )
    await source.redis.xgroup_create(source.keys.log(0), DELIVER_GROUP, id="0", mkstream=True)
    path = tmp_path / "hanoi.ndjson"
    written = await _backed_up(source, path)
    assert (written.updates, written.stories, written.inbox) == (29, len(stories), 3)
    assert written.settings == 4  # the feed, its token, the subscription, its secret
    file = [msgspec.json.decode(x) for x in path.read_bytes().splitlines()]
    assert [x["t"] for x in file[:2]] == ["header", "update"]
    assert file[0]["delivery"] is True
    assert file[-1]["t"] == "end" and file[-1]["signature"] is None

    to = Keys(f"r{uuid.uuid4().hex[:8]}", 16)
    target = aioredis.Redis.from_url(redis_url.removesuffix("/0") + "/4")
    try:
        await _restored(path, target, to)
        restored = Log(target, to)
        assert await _histories(restored, stories) == await _histories(source, stories)
        first = next(x for x in HANOI.read_bytes().splitlines() if x.strip())
        [again] = await restored.append([first])
        assert (again.status, again.version) == ("duplicate", 1)
        assert again.position is not None and again.subject is not None
        assert again.position.startswith(f"{to.partition(again.subject)}:")
        assert await Credentials(target, to.prefix).authenticate(token) is not None
        assert await Subscriptions(target, to).secret("cms") == secret
        assert entries_of(await target.xrange(inbox_key(to.prefix, "wire-a"))) == entries_of(
            await source.redis.xrange(inbox)
        )
        assert [eid for eid, _ in entries_of(await source.redis.xrange(inbox))] == sent
        for p in range(to.partitions):
            [group] = await target.xinfo_groups(to.log(p))
            assert group["name"] == DELIVER_GROUP.encode()
            last = (await target.xinfo_stream(to.log(p)))["last-generated-id"]
            assert group["last-delivered-id"] == last
        [new] = await restored.append([encode(update(subject=stories[0], id="after"))])
        assert new.version == await source.version(stories[0]) + 1
    finally:
        await _cleared(target, to.prefix)


async def test_a_restore_is_refused_where_an_inbox_it_brings_is_there_already(
    source: Log, redis_url: str, tmp_path: Path
) -> None:
    """`dateline restore`: a feed's inbox restored entry for entry stops at the first entry
    a stream there already holds past it: refused up front, naming it, nothing written. The
    validator's refusals are not in a backup, so a `rejected` stream there is no bar."""
    await hanoi_in(source)
    await Credentials(source.redis, source.keys.prefix).add("wire-a", "urn:feed:test")
    await source.redis.xadd(inbox_key(source.keys.prefix, "wire-a"), {"update": b"{}"})
    path = tmp_path / "hanoi.ndjson"
    await _backed_up(source, path)
    assert backup.verify(path, None).inboxes == {"wire-a"}
    to = Keys(f"r{uuid.uuid4().hex[:8]}", 4)
    there = redis_url.removesuffix("/0") + "/4"
    target = aioredis.Redis.from_url(there)
    env = {k: v for k, v in os.environ.items() if k != "DATELINE_SEAL_KEY"}
    env |= {"REDIS_URL": there, "DATELINE_PREFIX": to.prefix}
    restore = ("restore", "--partitions", "4", str(path))
    inbox = inbox_key(to.prefix, "wire-a")
    try:
        await target.xadd(rejected_key(to.prefix), {"feed": "wire-b"})
        await target.xadd(inbox, {"update": b"{}"})
        refused = await asyncio.to_thread(_dateline, env, *restore)
        assert refused.returncode == 1, refused.stderr
        assert f"the target already holds {inbox}: streams the copy" in refused.stderr
        assert "nothing was written" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not await target.exists(to.config, *to.logs())
        await target.delete(inbox)
        landed = await asyncio.to_thread(_dateline, env, *restore)
        assert landed.returncode == 0, landed.stderr
        assert "restored 29 updates" in landed.stdout
    finally:
        await _cleared(target, to.prefix)


async def _log_entries(log: Log) -> list[LogEntry]:
    """Every entry of the log, as the fan-out reads them, in stream-id order."""
    found = [
        LogEntry(p, eid.decode() if isinstance(eid, bytes) else eid, fields[b"__data__"])
        for p in range(log.keys.partitions)
        for eid, fields in entries_of(await log.redis.xrange(log.keys.log(p)))
    ]
    return sorted(found, key=lambda e: (stream_id(e.entry_id), e.partition))


def _ids(records: list[bytes]) -> list[str]:
    return [msgspec.json.decode(r)["id"] for r in records]


async def test_a_restore_puts_back_what_each_subscription_was_owed(
    source: Log, redis_url: str, tmp_path: Path
) -> None:
    """`cms` was fanned the first 20 updates, its receiver acknowledged 5 and the sixth
    was parked; `alerts` (outcomes only) was fanned nothing yet. Restored with twice the
    partitions: `cms` is owed the 14 in its outbox and the 9 never fanned out, in log
    order, and its dead letter; `alerts` its outcome. Nothing acknowledged comes back."""
    registry = Subscriptions(source.redis, source.keys)
    cms, _ = await registry.add("https://cms.example.org/hooks", name="cms")
    outcomes = ["dateline.outcome.reported"]
    await registry.add("https://alerts.example.org/hooks", name="alerts", types=outcomes)
    await hanoi_in(source)
    for p in range(source.keys.partitions):
        await source.redis.xgroup_create(source.keys.log(p), DELIVER_GROUP, id="0", mkstream=True)
    entries = await _log_entries(source)
    assert len(entries) == 29
    for p in range(source.keys.partitions):
        for sub, share in route([cms], [e for e in entries[:20] if e.partition == p]):
            await registry.to_outbox(sub, p, share)
    window = await registry.window("cms", 100)
    assert len(window) == 20
    await registry.delivered("cms", [(eid, 200) for eid, _ in window[:5]])
    sixth, fields = window[5]
    why = Parked(sixth, fields[b"story"].decode(), fields[b"position"].decode(), "HTTP 500", 9, 1.0)
    await registry.park("cms", [(sixth, fields, why)])
    path = tmp_path / "owed.ndjson"
    written = await _backed_up(source, path)
    assert (written.unsent, written.parked) == (14 + 9 + 1, 1)

    to = Keys(f"r{uuid.uuid4().hex[:8]}", 16)
    target = aioredis.Redis.from_url(redis_url.removesuffix("/0") + "/4")
    try:
        await _restored(path, target, to)
        restored = Subscriptions(target, to)
        order = {e.position: n for n, e in enumerate(entries)}
        owed = sorted([f[b"position"].decode() for _, f in window[6:]], key=order.__getitem__)
        owed += [e.position for e in entries[20:]]
        by_position = {e.position: e.raw for e in entries}
        queued = [f for _, f in await restored.window("cms", 100)]
        assert _ids([f[b"record"] for f in queued]) == _ids([by_position[x] for x in owed])
        assert [f[b"record"] for f in queued] == [by_position[x] for x in owed]
        for f in queued:  # where the restored log holds it
            position = Position.parse(f[b"position"].decode())
            assert position.partition == to.partition(f[b"story"].decode())
            eid = f"{position.id[0]}-{position.id[1]}"
            [(_, held)] = entries_of(await target.xrange(to.log(position.partition), eid, eid))
            assert held[b"__data__"] == f[b"record"]
        [(_, letter)] = await restored.dead_letters("cms")
        assert (letter.error, letter.attempts, letter.story) == ("HTTP 500", 9, why.story)
        assert Position.parse(letter.position).partition == to.partition(why.story)
        assert await restored.parked_stories("cms") == {why.story}
        alerted = [f[b"record"] for _, f in await restored.window("alerts", 100)]
        assert [msgspec.json.decode(r)["type"] for r in alerted] == outcomes
    finally:
        await _cleared(target, to.prefix)


async def test_a_subscription_removed_while_the_backup_ran_gets_no_outbox_on_restore(
    source: Log, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its deliveries were read at the cut, its setting was gone when the settings were:
    the file holds what it was owed and no subscription. The restore says so and writes
    no outbox that no service would read."""
    registry = Subscriptions(source.redis, source.keys)
    await registry.add("https://cms.example.org/hooks", name="cms")
    await registry.add("https://gone.example.org/hooks", name="gone")
    await hanoi_in(source)
    for p in range(source.keys.partitions):
        await source.redis.xgroup_create(source.keys.log(p), DELIVER_GROUP, id="0", mkstream=True)
    read_dues = owed.dues

    async def then_removed(*args: object) -> list[owed.Due]:
        found = await read_dues(*args)  # type: ignore[arg-type]
        await registry.remove("gone")
        return found

    monkeypatch.setattr(owed, "dues", then_removed)
    path = tmp_path / "removed.ndjson"
    written = await _backed_up(source, path)
    assert written.unsent == 2 * 29
    to = Keys(f"r{uuid.uuid4().hex[:8]}", 8)
    target = aioredis.Redis.from_url(redis_url.removesuffix("/0") + "/4")
    try:
        checked = backup.verify(path, None)
        assert sorted(d.subscription for d in checked.deliveries) == ["cms", "gone"]
        await Log(target, to).check_partitions()
        done = await backup.restore(path, checked, target, to)
        assert (done.gone, done.queued) == (["gone"], 29)
        assert [k async for k in target.scan_iter(match=f"{to.prefix}:*gone*")] == []
        assert len(await Subscriptions(target, to).window("cms", 100)) == 29
    finally:
        await _cleared(target, to.prefix)


async def test_a_backup_holds_the_log_as_it_stood_when_it_began(
    source: Log, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends go on while a backup reads: it stops at each partition's last entry when it
    began (`migrate.cut`), and what came after is the next one's."""
    await hanoi_in(source)
    real = migrate.cut

    async def cut_then_appended(client: aioredis.Redis, keys: Keys) -> dict[int, str]:
        taken = await real(client, keys)
        more = [encode(update(subject=f"story-{n}", id=f"late-{n}")) for n in range(12)]
        assert {r.status for r in await source.append(more)} == {"appended"}
        return taken

    monkeypatch.setattr(migrate, "cut", cut_then_appended)
    path = tmp_path / "cut.ndjson"
    written = await _backed_up(source, path)
    assert (written.updates, written.stories) == (29, 2)
    file = [msgspec.json.decode(x) for x in path.read_bytes().splitlines()]
    ids = [x["record"]["id"] for x in file if x["t"] == "update"]
    assert len(ids) == 29 and not any(i.startswith("late-") for i in ids)
    assert file[0]["cut"] == {str(p): eid for p, eid in written.cut.items()}
    everything = [r async for *_, r in migrate.opened_records(source.redis, source.sealing)]
    assert len(everything) == 29 + 12


async def test_a_sealed_log_is_signed_and_restored_sealed(
    source: Log, redis_url: str, tmp_path: Path
) -> None:
    """The file holds records opened (no seal: a new server seals them with its own key),
    and is signed with the log's key; an entry written around the append function is
    left out and named, not a reason to fail; the restored log, sealed again, reads back."""
    if int(str((await source.redis.info("server"))["redis_version"]).split(".")[0]) < 7:
        pytest.skip("Redis 6.2 has no functions: its logs are not sealed")
    stories = await hanoi_in(source)
    key = secrets.token_bytes(32)
    await seal_log(source.redis, source.keys, key)
    sealed = Log(source.redis, source.keys, sealing=Sealing(key, source.keys))
    [late] = await sealed.append([encode(update(subject=stories[0], id="after-sealing"))])
    assert late.status == "appended"
    part = source.keys.partition(stories[0])
    forged = encode(update(subject=stories[0], id="forged"))[:-1] + (
        b',"version":99,"position":"0:1-0","recordedtime":"2019-02-28T00:00:00.000Z"}'
    )
    forged_at = await source.redis.xadd(source.keys.log(part), {"__data__": forged})
    path = tmp_path / "sealed.ndjson"
    written = await _backed_up(sealed, path, key)
    assert written.signed and written.updates == 30
    assert written.refused == [
        f"{part}:{forged_at.decode() if isinstance(forged_at, bytes) else forged_at}"
    ]
    assert b'"forged"' not in path.read_bytes()
    assert b'"seal":' not in path.read_bytes()
    with pytest.raises(backup.BadSignature):
        backup.verify(path, secrets.token_bytes(32))
    to = Keys(f"r{uuid.uuid4().hex[:8]}", 8)
    target = aioredis.Redis.from_url(redis_url.removesuffix("/0") + "/5")
    try:
        await _restored(path, target, to, key)
        new_key = secrets.token_bytes(32)
        await seal_log(target, to, new_key)
        restored = Log(target, to, sealing=Sealing(new_key, to))
        assert await _histories(restored, stories) == await _histories(sealed, stories)
    finally:
        await _cleared(target, to.prefix)


async def _keyspace(client: aioredis.Redis, to: Keys) -> dict[str, object]:
    """Every key of a log under `to`, by its name without the prefix: lists, streams,
    hashes as they are."""
    out: dict[str, object] = {}
    async for raw in client.scan_iter(match=f"{to.prefix}:*"):
        name = cast(bytes, raw).decode()
        kind = cast(bytes, await client.type(name)).decode()
        if kind == "list":
            value: object = await client.lrange(name, 0, -1)
        elif kind == "stream":
            value = await client.xrange(name)
        elif kind == "hash":
            value = await client.hgetall(name)
        else:
            value = await client.get(name)
        out[name.removeprefix(to.prefix)] = value
    return out


async def test_a_restore_writes_its_lists_sealed_as_sealing_them_after_would(
    source: Log, redis_url: str, tmp_path: Path
) -> None:
    """One pass (the lists written sealed, checked sealed, the partitions marked) leaves
    the log exactly as a restore and then `seal_log` over it did, key for key; the check
    refuses a list record without its seal, or with one that does not match."""
    if int(str((await source.redis.info("server"))["redis_version"]).split(".")[0]) < 7:
        pytest.skip("Redis 6.2 has no functions: its logs are not sealed")
    stories = await hanoi_in(source)
    path = tmp_path / "hanoi.ndjson"
    await _backed_up(source, path)
    key = secrets.token_bytes(32)
    target = aioredis.Redis.from_url(redis_url.removesuffix("/0") + "/7")
    one, two = Keys(f"o{uuid.uuid4().hex[:8]}", 4), Keys(f"t{uuid.uuid4().hex[:8]}", 4)
    try:
        checked = backup.verify(path, None)
        assert await sealing_key(target, key) == key
        await Log(target, one).check_partitions()
        done = await backup.restore(path, checked, target, one, seal_key=key)
        assert await migrate.check(target, one, done.checks, seal_key=key) == []
        marked = await seal_log(target, one, key, listed=True)
        assert (marked.partitions, marked.records) == (4, 0)

        await _restored(path, target, two)
        after = await seal_log(target, two, key)
        assert (after.records, after.mismatched) == (29, [])
        assert await _keyspace(target, one) == await _keyspace(target, two)
        reader = Log(target, one, sealing=Sealing(key, one))
        assert await _histories(reader, stories) == await _histories(source, stories)

        listed = one.story(stories[0])
        record = cast(bytes, await target.lindex(listed, 1))
        without = opened(key, record)  # its seal taken off
        await target.lset(listed, 1, without)  # type: ignore[arg-type]  # bytes, as stored
        wrong = await migrate.check(target, one, done.checks, seal_key=key)
        assert wrong == [f"{stories[0]}: its record 2 carries no seal"]
        changed = record.replace(b'"version":2', b'"version":3')
        await target.lset(listed, 1, changed)  # type: ignore[arg-type]  # bytes, as stored
        wrong = await migrate.check(target, one, done.checks, seal_key=key)
        assert wrong == [
            f"{stories[0]}: its record 2: its seal does not match: the record was changed or forged"
        ]
    finally:
        await _cleared(target, one.prefix)
        await _cleared(aioredis.Redis.from_url(redis_url.removesuffix("/0") + "/7"), two.prefix)


async def _owed_everything(log: Log) -> list[str]:
    """A subscription to every story, added before Hanoi, fanned out nothing of it."""
    await Subscriptions(log.redis, log.keys).add("https://cms.example.org/hooks", name="cms")
    stories = await hanoi_in(log)
    for p in range(log.keys.partitions):
        await log.redis.xgroup_create(log.keys.log(p), DELIVER_GROUP, id="0", mkstream=True)
    return stories


async def _queued_ids(client: aioredis.Redis, keys: Keys) -> list[str]:
    return _ids([f[b"record"] for _, f in await Subscriptions(client, keys).window("cms", 100)])


async def test_a_backup_of_one_server_is_restored_on_a_cluster(
    source: Log, local_cluster: LocalCluster, tmp_path: Path
) -> None:
    """The subscription's outbox too, in its slot on the cluster."""
    stories = await _owed_everything(source)
    path = tmp_path / "hanoi.ndjson.gz"
    with gzip.open(path, "wb") as out:
        await backup.write(source.redis, source.sealing, out, source="a test", key=None)
    target = await open_client(local_cluster.url)
    to = Keys(f"r{uuid.uuid4().hex[:8]}", 12, slotted=True)
    try:
        await _restored(path, target, to)
        restored = Log(target, to)
        assert await _histories(restored, stories) == await _histories(source, stories)
        assert await _queued_ids(target, to) == _ids([e.raw for e in await _log_entries(source)])
    finally:
        found = [k async for k in target.scan_iter(match=f"{to.prefix}:*")]
        if found:
            await target.delete(*found)
        await target.aclose()


async def test_a_backup_of_a_cluster_log_is_restored_on_one_server(
    cluster_log: Log, redis_url: str, tmp_path: Path
) -> None:
    """The merge by stream id across partitions on many nodes, and the cut, through the
    cluster client; a subscription's deliveries read in its slot."""
    stories = await _owed_everything(cluster_log)
    path = tmp_path / "cluster.ndjson"
    written = await _backed_up(cluster_log, path)
    assert (written.updates, written.stories, written.unsent) == (29, len(stories), 29)
    assert set(written.cut) == set(range(8))
    to = Keys(f"r{uuid.uuid4().hex[:8]}", 4)
    target = aioredis.Redis.from_url(redis_url.removesuffix("/0") + "/6")
    try:
        await _restored(path, target, to)
        theirs = await _histories(cluster_log, stories)
        assert await _histories(Log(target, to), stories) == theirs
        everything = _ids([e.raw for e in await _log_entries(cluster_log)])
        assert await _queued_ids(target, to) == everything
    finally:
        await _cleared(target, to.prefix)


def _dateline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DATELINE), *args], env=env, capture_output=True, text=True, check=False
    )


def test_the_commands_back_up_check_and_restore_and_say_what_is_wrong(
    redis_url: str, tmp_path: Path
) -> None:
    """As an operator runs them: a backup, a check, a restore under another prefix with
    the stale read models there deleted; and a file changed, a target not empty, a
    signed file without its key, each refused with nothing written."""
    prefix, there = f"b{uuid.uuid4().hex[:8]}", f"r{uuid.uuid4().hex[:8]}"
    elsewhere = f"s{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATELINE_SEAL_KEY",)}
    env |= {"REDIS_URL": redis_url, "DATELINE_PREFIX": prefix}
    client = redis.Redis.from_url(redis_url)
    try:
        published = _dateline(env, "publish", str(HANOI))
        assert published.returncode == 0, published.stderr
        path = tmp_path / "hanoi.ndjson.gz"
        done = _dateline(env, "backup", str(path))
        assert done.returncode == 0, done.stderr
        assert "backed up 29 updates of 2 stories (8 partitions" in done.stdout
        assert "not signed (no seal key)" in done.stdout
        assert path.stat().st_mode & 0o777 == 0o600
        # Recorded in the log's server: what `dateline status` (and the alert) go by.
        said = json.loads(_dateline(env, "status", "--json").stdout)["backup"]
        assert (said["updates"], said["stories"], said["file"]) == (29, 2, str(path))
        assert said["bytes"] == path.stat().st_size and not said["signed"]
        assert "last backup: began " in _dateline(env, "status").stdout
        assert not path.with_name(path.name + ".partial").exists()

        checked = _dateline(env, "restore", "--check", str(path))
        assert checked.returncode == 0, checked.stderr
        assert "whole and unchanged, 29 updates of 2 stories" in checked.stdout
        assert "signature none" in checked.stdout
        assert not list(client.scan_iter(match=f"{there}:*"))

        # Read models under the target's prefix, from a log that is not there any more.
        client.set(f"{there}:rm:active", "v1")
        client.set(f"{there}:rm:v1:{{p0}}:story:hanoi-summit-2019", "{}")
        restore = {**env, "DATELINE_PREFIX": there}
        landed = _dateline(restore, "restore", "--partitions", "4", str(path))
        assert landed.returncode == 0, landed.stderr
        assert "restored 29 updates of 2 stories" in landed.stdout
        assert f"under the prefix '{there}' (8 -> 4 partitions)" in landed.stdout
        assert "each story's count and digest match the file" in landed.stdout
        assert "2 keys of read models under" in landed.stdout
        assert not list(client.scan_iter(match=f"{there}:rm:*"))
        logged = _dateline({**restore, "DATELINE_PARTITIONS": "4"}, "log", "hanoi-summit-2019")
        assert logged.returncode == 0, logged.stderr
        assert _dateline(env, "log", "hanoi-summit-2019").stdout.count("\n") == (
            logged.stdout.count("\n")
        )

        again = _dateline(restore, "restore", str(path))
        assert again.returncode == 1
        assert "already holds a log under the prefix" in again.stderr
        assert "nothing was written" in again.stderr

        changed = tmp_path / "changed.ndjson"
        changed.write_bytes(gzip.decompress(path.read_bytes()).replace(b"Trump", b"Trunp", 1))
        fresh = {**env, "DATELINE_PREFIX": f"n{uuid.uuid4().hex[:8]}"}
        refused = _dateline(fresh, "restore", str(changed))
        assert refused.returncode == 1
        assert "do not match the digest on its closing line" in refused.stderr
        assert "nothing was written" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not list(client.scan_iter(match=f"{fresh['DATELINE_PREFIX']}:*"))

        key = tmp_path / "seal.key"
        key.write_text(secrets.token_hex(32) + "\n")
        signed_env = {**env, "DATELINE_SEAL_KEY": key.read_text().strip()}
        if int(str(client.info("server")["redis_version"]).split(".")[0]) >= 7:
            sealed = _dateline(signed_env, "seal")
            assert sealed.returncode == 0, sealed.stderr
        signed = tmp_path / "signed.ndjson"
        assert _dateline(signed_env, "backup", str(signed)).returncode == 0
        unkeyed = _dateline(fresh, "restore", "--check", str(signed))
        assert unkeyed.returncode == 1
        assert "the backup is signed, and there is no key here to check it" in unkeyed.stderr
        bad_key = tmp_path / "bad.key"
        bad_key.write_text("not a key\n")
        badly = _dateline(fresh, "restore", "--check", "--backup-key", str(bad_key), str(signed))
        assert badly.returncode == 2
        assert "expected 64 hex digits" in badly.stderr and "Traceback" not in badly.stderr
        keyed = _dateline(fresh, "restore", "--check", "--backup-key", str(key), str(signed))
        assert keyed.returncode == 0, keyed.stderr
        assert "signature checked" in keyed.stdout

        # With this deployment's seal key, the restored log is sealed where it can be.
        sealed_there = {**signed_env, "DATELINE_PREFIX": elsewhere}
        back = _dateline(sealed_there, "restore", str(signed))
        assert back.returncode == 0, back.stderr
        if int(str(client.info("server")["redis_version"]).split(".")[0]) >= 7:
            assert "inbox entries; sealed\n" in back.stdout, back.stdout
            markers = [client.hget(Keys(elsewhere, 8).seal(p), "lists") for p in range(8)]
            assert markers == [b"1"] * 8
        else:
            assert "not sealed (no key, or no functions here)" in back.stdout
        read = _dateline(sealed_there, "log", "hanoi-summit-2019")
        assert read.returncode == 0, read.stderr
        assert read.stdout.count("\n") == logged.stdout.count("\n")
    finally:
        for p in (prefix, there, elsewhere):
            for k in client.scan_iter(match=f"{p}:*"):
                client.delete(k)
        client.close()
