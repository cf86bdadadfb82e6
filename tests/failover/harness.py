"""Failovers on a real local cluster while feeds publish over HTTP, and a checker.

    python3 dev.py failover            # every scenario, with and without the replica wait

A cluster of 3 masters with a replica each (`dateline redis --cluster`'s nodes), one
`dateline ingest` process on it, and publishers over HTTP: one a story, each sending
its story's updates one at a time and retrying the same update (same `id`) while the
answer is a 503 or nothing, as the contract asks of a feed. Mid-stream one fault hits
the shard that holds the first story's partition:

- `kill-master`: SIGKILL of its master; the replica takes over; the old master is
  started again afterwards and rejoins as a replica.
- `kill-replica`: SIGKILL of its replica, started again after a while.
- `stop-master`: SIGSTOP of its master for longer than the node timeout, so the
  replica takes over, then SIGCONT: what did the old master acknowledge?
- `lagging-replica`: SIGSTOP of its replica (a replica cut off by the network), then
  SIGKILL of the master, then SIGCONT of the replica, which takes over without what
  the master took meanwhile. This is the case the replica wait is for.

A `dateline projector` and a `dateline query` run on the cluster through it all, and a
dashboard follows the live index (`/v1/live`), resuming from its last event id whenever
its stream breaks. A `dateline deliver` sends every update to a subscriber (a receiver
process that answers 204 and writes down what it got).

The checker reads the log back and says whether every acknowledged update is in it
exactly once with the version it was acknowledged with, every story's versions
gap-free, and every partition's stream, dedup entries and story lists of one count.
Once the projector has caught up, every story's read models must equal a fold of its
log, and the dashboard must have been told every version of every story; once the
delivery service has, the subscriber must have every update the log holds, in order
per story (a repeat only right after itself, with the same `webhook-id`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import redis

from dateline.domain import project
from dateline.ingest.credentials import Credentials
from dateline.ingest.wire import CE_BATCH
from dateline.store.cluster import LocalCluster
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys, feed_tokens_key, group_of
from dateline.store.log import Log
from dateline.store.readers import Readers
from dateline.store.readmodels import ReadModels
from dateline.store.subscriptions import Subscriptions
from tests.e2e.processes import (
    background,
    free_port,
    http_service,
    ingest_process,
    receiver_process,
)
from tests.factories import update
from tests.raw import data

SCENARIOS = ("kill-master", "kill-replica", "stop-master", "lagging-replica")
PREFIX, PARTITIONS, STORIES = "failover", 8, 16
SOURCE, FEED = "urn:feed:failover", "failover"
BEFORE_S, AFTER_S = 2.0, 2.0
"""Publishing before the fault, and after the shard is whole again."""
OUTAGE_S = 3.0
"""How long a stopped or killed node stays so: three node timeouts."""
LAG_S = 2.0
"""How long the replica is cut off before its master dies (`lagging-replica`)."""
RETRY_FOR_S = 30.0
"""How long a publisher keeps retrying one update before it gives up (and the run fails)."""
TAKEOVER_S = 15.0
CATCH_UP_S = 60.0
"""How long the projector and the dashboard get to reach the log's end afterwards."""


class _Record(msgspec.Struct):
    id: str
    version: int
    position: str = ""


class _DeliveredRecord(msgspec.Struct):
    subject: str
    id: str
    version: int
    position: str


@dataclass(frozen=True, slots=True)
class _Delivered:
    webhook_id: str
    story: str
    id: str
    version: int
    position: str


_records = msgspec.json.Decoder(_Record).decode
_delivered_record = msgspec.json.Decoder(_DeliveredRecord).decode
DELIVER = ["deliver", "--first-backoff", "0.2s", "--max-backoff", "1s", "--timeout", "2s"]


@dataclass
class Ack:
    story: str
    id: str
    version: int
    at: float


@dataclass
class Result:
    scenario: str
    min_replicas: int
    acknowledged: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    wrong_version: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    took_over_s: float | None = None
    """From the fault to the replica answering as a master (none: it never did)."""
    longest_wait_s: float = 0.0
    """The longest the struck shard's stories went without an acknowledgement, from the
    fault on: what its feeds saw of the outage."""
    others_wait_s: float = 0.0
    """The same for the stories of the other shards."""
    reused: list[str] = field(default_factory=list)
    """Versions of a story acknowledged to two different updates: what a lost update
    looks like to a feed."""
    credentials_struck: bool = False
    """The feeds' tokens hash is on the struck shard (every request reads it)."""
    models_off: list[str] = field(default_factory=list)
    """Stories whose read models, once the projector caught up, are not a fold of the log."""
    live_gaps: list[str] = field(default_factory=list)
    """Stories of which the dashboard's live index missed a version."""
    live_repeats: int = 0
    """Versions the live index told twice (after a resume): allowed, counted."""
    live_phantoms: int = 0
    """Versions the live index told of that the log no longer has (a master's writes
    lost with it: the dashboard saw what the feed was told, then lost)."""
    live_resumes: int = 0
    """How often the dashboard's stream broke and it resumed from its last event id."""
    undelivered: list[str] = field(default_factory=list)
    """Updates the log holds that the subscriber never got."""
    delivered_out_of_order: list[str] = field(default_factory=list)
    delivered_twice: int = 0
    """Deliveries of an update the subscriber had already acknowledged (same webhook-id:
    it drops them): allowed, counted."""
    delivered_moved: int = 0
    """Updates delivered at a position the log does not hold them at: the old master
    took them alone (the feed got a 503), they were delivered and lost with it, and the
    feed's retry put them at a new position (a new webhook-id; the same CloudEvent id)."""
    delivered_phantoms: int = 0
    """Updates delivered that the log no longer has (a master's writes lost with it)."""

    @property
    def ok(self) -> bool:
        """Nothing acknowledged lost or doubled, versions as acknowledged and gap-free."""
        return not (
            self.lost
            or self.twice
            or self.wrong_version
            or self.gaps
            or self.counts
            or self.gave_up
            or self.unexpected
            or self.models_off
            or self.live_gaps
            or self.undelivered
            or self.delivered_out_of_order
        )

    @property
    def kept(self) -> bool:
        """What the log holds is whole and once (the loss apart): versions gap-free,
        nothing doubled, the counts agree; and the read models are a fold of it."""
        return not (
            self.twice
            or self.gaps
            or self.counts
            or self.unexpected
            or self.models_off
            or self.undelivered
            or self.delivered_out_of_order
        )


def _stories(keys: Keys) -> list[str]:
    """Two stories a partition; the first one's partition is the one the fault hits."""
    out: list[str] = []
    per: Counter[int] = Counter()
    n = 0
    while len(out) < STORIES:
        story = f"fo-{n}"
        n += 1
        if per[keys.partition(story)] < STORIES // PARTITIONS:
            per[keys.partition(story)] += 1
            out.append(story)
    return out


def _node_id(node: EmbeddedRedis) -> str:
    client = redis.Redis.from_url(node.url, socket_timeout=2)
    try:
        return str(client.execute_command("CLUSTER", "MYID").decode())  # type: ignore[no-untyped-call]
    finally:
        client.close()


def _shard(cluster: LocalCluster, slot_key: str) -> tuple[EmbeddedRedis, EmbeddedRedis]:
    """The master that serves `slot_key`, and its replica."""
    probe = redis.RedisCluster.from_url(cluster.url)
    try:
        owner = probe.get_node_from_key(slot_key)  # type: ignore[no-untyped-call]
    finally:
        probe.close()
    master = next(n for n in cluster.nodes if n.port == owner.port)
    master_id = _node_id(master)
    client = redis.Redis.from_url(master.url, socket_timeout=2)
    try:
        text = client.execute_command("CLUSTER", "NODES").decode()  # type: ignore[no-untyped-call]
    finally:
        client.close()
    ports = {
        int(parts[1].split("@")[0].rsplit(":", 1)[1])
        for parts in (line.split() for line in text.splitlines())
        if len(parts) > 3 and parts[3] == master_id
    }
    replica = next(n for n in cluster.nodes if n.port in ports)
    return master, replica


def _command(node: EmbeddedRedis, *args: str) -> None:
    client = redis.Redis.from_url(node.url, socket_timeout=2)
    try:
        client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def _is_master(node: EmbeddedRedis) -> bool:
    client = redis.Redis.from_url(node.url, socket_timeout=0.5)
    try:
        return bool(client.info("replication")["role"] == "master")
    except redis.RedisError:
        return False
    finally:
        client.close()


async def _until(check: Callable[[], bool], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(0.05)
    return False


class Publishers:
    """One publisher a story, over HTTP, each retrying an update until it is acknowledged."""

    def __init__(self, base: str, token: str, stories: list[str]) -> None:
        self.base, self.stories = base, stories
        self.headers = {"content-type": CE_BATCH, "authorization": f"Bearer {token}"}
        self.acks: list[Ack] = []
        self.answers: Counter[str] = Counter()
        self.gave_up: list[str] = []
        self.unexpected: list[str] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=len(self.stories))
        async with httpx.AsyncClient(base_url=self.base, timeout=5, limits=limits) as http:
            await asyncio.gather(*(self._story(http, s) for s in self.stories))

    async def _story(self, http: httpx.AsyncClient, story: str) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            doc = update(subject=story, id=f"{story}-{n:05d}", source=SOURCE)
            if not await self._send(http, story, doc):
                return

    async def _send(self, http: httpx.AsyncClient, story: str, doc: dict[str, object]) -> bool:
        body = json.dumps([doc]).encode()
        deadline = time.monotonic() + RETRY_FOR_S
        while time.monotonic() < deadline:
            try:
                r = await http.post("/v1/updates", content=body, headers=self.headers)
            except httpx.HTTPError as exc:
                self.answers[f"no answer ({type(exc).__name__})"] += 1
                await asyncio.sleep(0.1)
                continue
            if r.status_code in (200, 202):  # 200: all of it was there already
                (result,) = r.json()["results"]
                self.answers[f"202 {result['status']}"] += 1
                self.acks.append(Ack(story, str(doc["id"]), result["version"], time.monotonic()))
                return True
            if r.status_code == 503:
                self.answers[f"503 {r.json().get('type', '').rsplit(':', 1)[-1]}"] += 1
                await asyncio.sleep(0.1)
                continue
            self.answers[f"{r.status_code}"] += 1
            self.unexpected.append(f"{doc['id']}: {r.status_code} {r.text[:300]}")
            return False
        self.gave_up.append(str(doc["id"]))
        return False


class LiveIndex:
    """A dashboard on the live index: every `update` event's story and version, resumed
    from the last event id whenever the stream breaks."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.base, self.headers = base, headers
        self.seen: dict[str, list[int]] = {}
        self.last_id: str | None = None
        self.resumes = 0
        self.events: list[list[object]] = []
        """Every update told: story, version, position, the event's id (a cursor)."""

    async def run(self) -> None:
        timeout = httpx.Timeout(5.0, read=60.0)
        async with httpx.AsyncClient(base_url=self.base, timeout=timeout) as http:
            while True:
                wanted = {**self.headers}
                if self.last_id:
                    wanted["last-event-id"] = self.last_id
                try:
                    async with http.stream("GET", "/v1/live", headers=wanted) as r:
                        if r.status_code == 200:
                            await self._read(r)
                except httpx.HTTPError:
                    pass
                self.resumes += 1
                await asyncio.sleep(0.2)

    async def _read(self, r: httpx.Response) -> None:
        event, ident, data = "", None, []
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and event:
                if event == "update":
                    doc = json.loads("\n".join(data))
                    self.seen.setdefault(doc["story"], []).append(doc["version"])
                    self.events.append([doc["story"], doc["version"], doc["position"], ident])
                self.last_id = ident or self.last_id
                event, ident, data = "", None, []

    def told(self, story: str) -> int:
        return max(self.seen.get(story, [0]))


async def _fault(
    scenario: str, cluster: LocalCluster, master: EmbeddedRedis, replica: EmbeddedRedis
) -> float | None:
    """Strike the shard, heal it, and return how long its replica took to take over."""
    started = time.monotonic()
    took_over: float | None = None

    async def takeover() -> float | None:
        if await _until(lambda: _is_master(replica), TAKEOVER_S):
            return time.monotonic() - started
        return None

    match scenario:
        case "kill-master":
            master.kill()
            took_over = await takeover()
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
            await asyncio.to_thread(master.start)
        case "kill-replica":
            replica.kill()
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(replica.start)
        case "stop-master":
            assert master.process is not None
            master.process.send_signal(signal.SIGSTOP)
            took_over = await takeover()
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
            master.process.send_signal(signal.SIGCONT)
        case "lagging-replica":
            assert replica.process is not None
            replica.process.send_signal(signal.SIGSTOP)
            # A stopped process keeps its socket, and the kernel would buffer megabytes
            # of the replication stream for it. Cutting the link from the master's side
            # is what a cut network does: the master goes on alone.
            await asyncio.to_thread(_command, master, "CLIENT", "KILL", "TYPE", "replica")
            await asyncio.sleep(LAG_S)
            started = time.monotonic()
            master.kill()
            replica.process.send_signal(signal.SIGCONT)
            took_over = await takeover()
            await asyncio.to_thread(master.start)
        case _:
            raise ValueError(f"no scenario {scenario!r}; there are {', '.join(SCENARIOS)}")
    await asyncio.to_thread(cluster.wait_ready, 30.0)
    return took_over


async def run(scenario: str, min_replicas: int, work: Path) -> Result:
    """One scenario on a fresh cluster; the checker's findings."""
    result = Result(scenario, min_replicas)
    with LocalCluster(work / "cluster", 3, 1, "everysec", "failover") as cluster:
        log = await Log.connect(cluster.url, prefix=PREFIX, partitions=PARTITIONS)
        try:
            token = await Credentials(log.redis, PREFIX).add(FEED, SOURCE)
            keys = log.keys
            stories = _stories(keys)
            master, replica = _shard(cluster, keys.log(keys.partition(stories[0])))
            tokens_at, _ = _shard(cluster, feed_tokens_key(PREFIX))
            result.credentials_struck = tokens_at is master
            env = {
                **os.environ,
                "REDIS_URL": cluster.url,
                "DATELINE_PREFIX": PREFIX,
                "DATELINE_PARTITIONS": str(PARTITIONS),
                "DATELINE_MIN_REPLICAS": str(min_replicas),
                "DATELINE_RATE_LIMIT": "0",
                "DATELINE_DATA_DIR": str(work / "data"),
            }
            reader = await Readers(log.redis, PREFIX).add("dashboard", "ops")
            port, received = free_port(), work / "received.ndjson"
            _, secret = await Subscriptions(log.redis, keys).add(
                f"http://127.0.0.1:{port}/hook", name="desk", allow_private=True
            )
            with (
                ingest_process(env, work / "ingest.log") as base,
                background(["projector"], env, work / "projector.log"),
                http_service("query", env, work / "query.log") as query,
                receiver_process(port, received, secret, work / "receiver.log"),
                background(DELIVER, env, work / "deliver.log"),
            ):
                # The fault strikes a running system: on a slow machine `deliver` was
                # still starting when it struck, and a lagging replica promoted without
                # its consumer groups is another scenario than this one's.
                await _reading(log, ["deliver", group_of("v1")])
                live = LiveIndex(query, {"authorization": f"Bearer {reader}"})
                following = asyncio.create_task(live.run())
                publishers = Publishers(base, token, stories)
                publishing = asyncio.create_task(publishers.run())
                await asyncio.sleep(BEFORE_S)
                fault_at = time.monotonic()
                result.took_over_s = await _fault(scenario, cluster, master, replica)
                await asyncio.sleep(AFTER_S)
                publishers.stop.set()
                await publishing
                await _caught_up(log, stories, live)
                following.cancel()
                await _delivered(log, stories, received)
                (work / "live.json").write_text(json.dumps(live.events))  # to look into
            _timing(result, publishers.acks, keys, stories[0], fault_at)
            result.answers = publishers.answers
            result.gave_up, result.unexpected = publishers.gave_up, publishers.unexpected
            result.acknowledged = len(publishers.acks)
            await _check(result, log, stories, publishers.acks)
            await _check_read_side(result, log, stories, live)
            await _check_deliveries(result, log, stories, received)
        finally:
            await log.close()
    return result


def _timing(result: Result, acks: list[Ack], keys: Keys, story: str, fault_at: float) -> None:
    struck = keys.partition(story)

    def longest(times: list[float]) -> float:
        around = [fault_at, *sorted(t for t in times if t > fault_at)]
        return max((b - a for a, b in itertools.pairwise(around)), default=0.0)

    result.longest_wait_s = longest([a.at for a in acks if keys.partition(a.story) == struck])
    result.others_wait_s = longest([a.at for a in acks if keys.partition(a.story) != struck])


async def _check(result: Result, log: Log, stories: list[str], acks: list[Ack]) -> None:
    given: dict[tuple[str, int], str] = {}
    for a in acks:
        if given.setdefault((a.story, a.version), a.id) != a.id:
            result.reused.append(f"{a.story} v{a.version}: {given[a.story, a.version]}, {a.id}")
    held = 0
    for story in stories:
        records = [_records(raw) for raw in await log.read_story_json(story)]
        held += len(records)
        versions = [r.version for r in records]
        if versions != list(range(1, len(records) + 1)):
            result.gaps.append(f"{story}: versions {versions[:5]}... not 1..{len(records)}")
        seen = Counter(r.id for r in records)
        result.twice += [i for i, c in seen.items() if c > 1]
        at = {r.id: r.version for r in records}
        for a in acks:
            if a.story != story:
                continue
            if a.id not in at:
                result.lost.append(a.id)
            elif at[a.id] != a.version:
                result.wrong_version.append(f"{a.id}: acknowledged as {a.version}, {at[a.id]}")
    streamed = sum([int(await log.redis.xlen(log.keys.log(p))) for p in range(PARTITIONS)])
    deduped = sum([int(await log.redis.hlen(log.keys.ids(p))) for p in range(PARTITIONS)])
    if not streamed == deduped == held:
        result.counts.append(f"stream entries {streamed}, dedup entries {deduped}, listed {held}")


async def _caught_up(log: Log, stories: list[str], live: LiveIndex) -> None:
    """Until the read models are at every story's last version and the dashboard was
    told of it (or `CATCH_UP_S` passed: the checker then says what is behind).

    Told of more is caught up too: a version the dashboard heard of before a promoted
    replica lost it (the checker's phantoms) stays told, and no wait mends it; waiting
    for the dashboard to equal the log took the whole minute whenever one happened."""
    models = ReadModels(log.keys, "v1")
    deadline = time.monotonic() + CATCH_UP_S
    while time.monotonic() < deadline:
        versions = [await log.version(s) for s in stories]
        entries = await _index_entries(log, models, stories)
        projected = [json.loads(e)["version"] if e else 0 for e in entries]
        told = [live.told(s) for s in stories]
        if projected == versions and all(t >= v for t, v in zip(told, versions, strict=True)):
            return
        await asyncio.sleep(0.2)


async def _index_entries(log: Log, models: ReadModels, stories: list[str]) -> list[bytes | None]:
    found = [await log.redis.hget(models.region_of(s).index, s) for s in stories]
    return [None if f is None else data(f) for f in found]


async def _check_read_side(result: Result, log: Log, stories: list[str], live: LiveIndex) -> None:
    """Each story's read models against a fold of its log; what the dashboard was told."""
    models = ReadModels(log.keys, "v1")
    for story in stories:
        history = await log.read_story(story)
        if await models.read_state(log.redis, story) != project(story, history):
            result.models_off.append(story)
        told = live.seen.get(story, [])
        missing = sorted(set(range(1, len(history) + 1)) - set(told))
        if missing:
            result.live_gaps.append(f"{story}: not told of versions {missing[:5]}")
        result.live_repeats += len(told) - len(set(told))
        result.live_phantoms += len({v for v in told if v > len(history)})
    result.live_resumes = live.resumes


def _deliveries(path: Path) -> list[_Delivered]:
    """What the subscriber acknowledged, in the order it got it."""
    if not path.exists():
        return []
    found = []
    *whole, _partial = path.read_bytes().split(b"\n")  # the last may be half-written
    for line in whole:
        row = json.loads(line) if line.strip() else {}
        if 200 <= row.get("answered", 0) < 300:
            body = _delivered_record(base64.b64decode(row["body"]))
            webhook_id = row["headers"]["webhook-id"]
            found.append(_Delivered(webhook_id, body.subject, body.id, body.version, body.position))
    return found


async def _reading(log: Log, groups: list[str]) -> None:
    """Until every partition of the log has these consumer groups (their processes have
    started), and `BEFORE_S` more for the cluster's replicas to have them too."""
    deadline = time.monotonic() + CATCH_UP_S
    missing = set(groups)
    while missing:
        if time.monotonic() > deadline:
            raise AssertionError(f"consumer groups never made: {sorted(missing)}")
        made = [
            {g["name"].decode() for g in await log.redis.xinfo_groups(stream)}
            for stream in log.keys.logs()
            if await log.redis.exists(stream)
        ]
        missing = {
            g for g in groups if len(made) < log.keys.partitions or any(g not in m for m in made)
        }
        await asyncio.sleep(0.2)
    await asyncio.sleep(BEFORE_S)


async def _delivered(log: Log, stories: list[str], path: Path) -> None:
    """Until the subscriber has every update the log holds (or `CATCH_UP_S` passed)."""
    deadline = time.monotonic() + CATCH_UP_S
    while time.monotonic() < deadline:
        got = {(d.id, d.position) for d in await asyncio.to_thread(_deliveries, path)}
        held = [
            (r.id, r.position) for s in stories for r in map(_records, await log.read_story_json(s))
        ]
        if got.issuperset(held):
            return
        await asyncio.sleep(0.5)


async def _check_deliveries(result: Result, log: Log, stories: list[str], path: Path) -> None:
    got = _deliveries(path)
    seen: set[str] = set()
    for d in got:
        result.delivered_twice += d.webhook_id in seen
        seen.add(d.webhook_id)
    for story in stories:
        records = [_records(raw) for raw in await log.read_story_json(story)]
        held = {r.id: r.version for r in records}
        at = {r.id: r.position for r in records}
        mine = [d for d in got if d.story == story]
        sent = {(d.id, d.position) for d in mine}
        missing = [r for r in records if (r.id, r.position) not in sent]
        if missing:
            result.undelivered.append(
                f"{story}: {len(missing)} never delivered (versions {missing[0].version} at "
                f"{missing[0].position} to {missing[-1].version} at {missing[-1].position})"
            )
        result.delivered_phantoms += len({d.id for d in mine if d.id not in held})
        result.delivered_moved += len({d.id for d in mine if d.id in at and d.position != at[d.id]})
        versions = [d.version for d in mine if at.get(d.id) == d.position]
        if versions != sorted(versions):
            result.delivered_out_of_order.append(f"{story}: delivered out of order")


def report(results: list[Result]) -> str:
    rows = [
        "| scenario | min replicas | acknowledged | lost | versions reused | doubled "
        "| wrong version | gaps | replica took over | longest wait, struck shard "
        "| the others | read models off | live: missed, repeated, lost, resumes "
        "| delivered: missed, out of order, repeated, moved, lost | answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def secs(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f} s"

    for r in results:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r.answers.items()))
        rows.append(
            f"| {r.scenario} | {r.min_replicas} | {r.acknowledged} | {len(r.lost)} "
            f"| {len(r.reused)} | {len(r.twice)} | {len(r.wrong_version)} | {len(r.gaps) + len(r.counts)} "
            f"| {secs(r.took_over_s) if r.scenario != 'kill-replica' else '-'} "
            f"| {r.longest_wait_s:.2f} s | {r.others_wait_s:.2f} s"
            f"{' (tokens struck)' if r.credentials_struck else ''} | {len(r.models_off)} "
            f"| {len(r.live_gaps)}, {r.live_repeats}, {r.live_phantoms}, {r.live_resumes} "
            f"| {len(r.undelivered)}, {len(r.delivered_out_of_order)}, {r.delivered_twice}, "
            f"{r.delivered_moved}, {r.delivered_phantoms} | {answers} |"
        )
    problems = [
        f"{r.scenario} (min replicas {r.min_replicas}): {what}"
        for r in results
        for what in (
            *r.gave_up,
            *r.unexpected,
            *r.gaps,
            *r.counts,
            *r.wrong_version[:5],
            *(f"read models off: {s}" for s in r.models_off[:5]),
            *r.live_gaps[:5],
            *r.undelivered[:5],
            *r.delivered_out_of_order[:5],
        )
    ]
    return "\n".join(rows + (["", *problems] if problems else []))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python3 dev.py failover",
        description="Failovers on a local cluster while feeds publish; a table of what "
        "every scenario lost, with and without waiting for a replica.",
    )
    parser.add_argument("--scenario", choices=SCENARIOS, action="append")
    parser.add_argument("--min-replicas", type=int, choices=(0, 1), action="append")
    parser.add_argument("--keep", action="store_true", help="keep the work dirs (logs)")
    args = parser.parse_args()
    results = []
    for scenario in args.scenario or SCENARIOS:
        for wanted in args.min_replicas or (1, 0):
            work = Path(tempfile.mkdtemp(prefix="dateline-failover-"))
            print(f"running {scenario} with DATELINE_MIN_REPLICAS={wanted} in {work}", flush=True)
            results.append(asyncio.run(run(scenario, wanted, work)))
            if not args.keep:
                shutil.rmtree(work)
    print(report(results))
