"""The asyncio client for the update log: append, read a story, read a partition."""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import takewhile
from typing import Any, Literal, cast

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dateline.store import scripts
from dateline.store.connection import appender_of, is_cluster, open_client
from dateline.store.layout import Keys, dedup_field
from dateline.store.replies import as_text, as_text_or_none
from dateline.store.reused import differences, said
from dateline.store.seal import FLAT_FUNCTION, Sealing, unsealed_log
from dateline.store.together import gathered
from dateline_schemas import (
    MAX_BATCH_BYTES,
    MAX_BATCH_UPDATES,
    Decoded,
    InvalidUpdate,
    Update,
    decode_record,
    decode_records,
    decode_update,
)

logger = structlog.get_logger("dateline.store")
Status = Literal["appended", "duplicate", "conflict", "invalid", "aborted"]
REFUSED: frozenset[Status] = frozenset({"conflict", "invalid", "aborted"})
APPEND_SCRIPT = scripts.load("append")
"""The append script. `Log.append` runs it; a client that pipelines appends on a raw
connection (the latency bench's load generator) runs it with `Log.prepare`'s keys and
arguments."""
_encode = msgspec.json.Encoder().encode
_pack = msgspec.msgpack.Encoder().encode
_LAST_INDEX = 2**63 - 1
AHEAD = 2
"""Batches `append_stream` sends ahead of the one whose reply it reads. Under
`appendfsync always` a batch's reply waits for its fsync; with two ahead rather than
one, the client prepares the next while the server writes and syncs: `append_stream`
against raw `XADD`, 10 pairs alternated, 0.93x against 0.86x (medians; the same under
`everysec`, 0.84x and 0.84x over 4 pairs)."""


class AppendResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """What happened to one update of a batch, in the batch's order."""

    index: int
    status: Status
    id: str | None = None
    source: str | None = None
    subject: str | None = None
    version: int | None = None
    """The story version: the new one, or the original's for a duplicate."""
    position: str | None = None
    """The log position, `<partition>:<stream id>`: new, or the original's."""
    current_version: int | None = None
    """For a conflict: the version the story holds."""
    field: str | None = None
    reason: str | None = None
    differs: list[str] | None = None
    """For a duplicate whose content is not the original's (an id used again for another
    update): what differs, `data.<name>` for a member of `data` (`store/reused.py`)."""

    @property
    def refused(self) -> bool:
        return self.status in REFUSED


class BatchTooLarge(ValueError):
    """More than 1,000 updates or 4 MiB in one batch."""


class CrossPartitionBatch(ValueError):
    """An `atomic` batch whose stories are in more than one partition, on a cluster."""


class PartitionMismatch(RuntimeError):
    """The log was created with another partition count than the one configured."""


PARTITIONS = 8
"""A new log's partition count on one server (`DATELINE_PARTITIONS` unset)."""
CLUSTER_PARTITIONS = 48
"""A new log's partition count on a cluster: with slot tags (`layout.slot_tags`), 48
spread evenly over 1, 2, 3, 4, 6, 8, 12, 16, 24 or 48 masters, and within one of even
over 5, 7, 9 or 10. On one server partitions only share out the consumers' work, and
each costs a read a cycle and a merge input a list: 8 is plenty there."""
SLOT_TAGS = "slots"
"""The config's `tags` for a log whose partitions carry `slot_tags`."""


async def log_keys(
    client: aioredis.Redis, prefix: str, partitions: int | None = None, *, create: bool = True
) -> Keys:
    """The log's keys, as its config says (partition count, tags). For a log not made yet:
    `partitions`, else `PARTITIONS` on one server and `CLUSTER_PARTITIONS` (with slot
    tags) on a cluster, recorded if `create` (a reader does not write). PartitionMismatch
    if `partitions` is given and the log has another count."""
    stored, tags = await client.hmget(Keys(prefix, 0).config, ["partitions", "tags"])
    if stored is None:
        cluster = is_cluster(client)
        made = partitions or (CLUSTER_PARTITIONS if cluster else PARTITIONS)
        keys = Keys(prefix, made, slotted=cluster)
        if create:
            await Log(client, keys).check_partitions()
        return keys
    keys = Keys(prefix, int(stored), slotted=tags == SLOT_TAGS.encode())
    if partitions is not None and partitions != keys.partitions:
        raise PartitionMismatch(
            f"the log under prefix {prefix!r} has {keys.partitions} partitions; "
            f"DATELINE_PARTITIONS is {partitions}. Set it to {keys.partitions}, or unset it."
        )
    return keys


class AppendFunctionMissing(RuntimeError):
    """The log is sealed and the function that appends to it is not on the server."""

    def __init__(self, function: str) -> None:
        super().__init__(
            f"the log is sealed, and its append function {function or '(unnamed)'} is not "
            "on the server: start the projector (or run `dateline seal`), which loads it"
        )


class NotReplicated(RuntimeError):
    """The server took an append, but fewer replicas than `min_replicas` confirmed it in
    time: were the server lost now, its replica, promoted, might not have it. So it may or
    may not be in the log for good; sending it again with the same ids is safe (a
    duplicate is accepted once, and waited for again)."""

    def __init__(self, wanted: int, reached: int, timeout_ms: int, results: list[AppendResult]):
        self.wanted, self.reached, self.results = wanted, reached, results
        super().__init__(
            f"{reached} of the {wanted} replicas required confirmed the append within "
            f"{timeout_ms} ms; it may or may not be in the log. Sending it again with the "
            "same ids is safe"
        )


class LogMoving(RuntimeError):
    """The log is being moved to another server, or has been (`dateline migrate`): its
    partitions refuse appends, and nothing was written. The message says which."""


PART_RETRIES_S = (0.05, 0.1, 0.2, 0.4)
"""The pauses between tries of one partition's append on a cluster (`Log._run_part`)."""
CLUSTER_TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    SlotNotCoveredError,
    TryAgainError,
)
"""What a cluster answers while a node is lost or a replica takes over, or while a slot
moves to another node (TRYAGAIN, `SlotMoving`): the append wrote nothing then."""

MIN_REPLICAS_AUTO = -1
"""`min_replicas` (and `Settings.min_replicas`' default): one when the server has a
replica, none when it has none (`resolve_replicas`)."""
AUTO_RECHECK_S = 10.0
"""With `MIN_REPLICAS_AUTO` and no replica found, how often to look again: a replica
started after the services (compose starts them side by side) is waited for within
this long. One found is waited for from then on, gone or not: a replica lost means
503s, not appends acknowledged by the primary alone."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated batch with its script arguments, ready to submit."""

    results: list[AppendResult | None]  # filled in for refused updates already
    valid: list[tuple[int, Update]]
    keys: list[str]
    args: list[Any]
    atomic: bool


class Log:
    """The update log on one Redis server. Build with `Log(client, keys)` or `connect`."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        min_replicas: int = 0,
        replica_timeout_ms: int = 1000,
        sealing: Sealing | None = None,
    ) -> None:
        """`min_replicas`: replicas that must confirm an append before it is acknowledged
        (`WAIT`); `MIN_REPLICAS_AUTO` until `resolve_replicas` decides. `sealing` opens
        the records this log's reads return (`store/seal.py`); none, they pass as stored."""
        self.redis = client
        self.keys = keys
        self.sealing = sealing or unsealed_log(keys)
        self.min_replicas = min_replicas
        self.replica_timeout_ms = replica_timeout_ms
        self._auto = min_replicas == MIN_REPLICAS_AUTO
        parts = range(keys.partitions)
        # Spelled once, not three times an update: `prepare` is the client's hot loop.
        self._partition_keys = (
            [keys.story("", p) for p in parts],
            [keys.log(p) for p in parts],
            [keys.ids(p) for p in parts],
        )
        self._function: str | None = None
        """The sealing append function, once a sealed partition named it."""
        self._looked = -AUTO_RECHECK_S
        self._append = scripts.Script(client, APPEND_SCRIPT)
        self._read_originals = scripts.bound(client, "originals")
        self.cluster = isinstance(client, RedisCluster)
        """On a cluster each partition is a slot of its own: a batch goes as one call per
        partition it touches, side by side (`_submit_parts`)."""

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        prefix: str = "dateline",
        partitions: int | None = None,
        min_replicas: int = 0,
        replica_timeout_ms: int = 1000,
        seal_key: bytes | None = None,
    ) -> Log:
        """The log at `url`, as its config says (`log_keys`), made if new."""
        client = await open_client(url)
        keys = await log_keys(client, prefix, partitions)
        log = cls(
            client,
            keys,
            min_replicas=min_replicas,
            replica_timeout_ms=replica_timeout_ms,
            sealing=Sealing(seal_key, keys),
        )
        await log.check_partitions()
        await log.resolve_replicas()
        return log

    async def resolve_replicas(self) -> int:
        """Decide `MIN_REPLICAS_AUTO`: one if the server has a replica now, else none (and
        look again `AUTO_RECHECK_S` later, at an append).

        `WAIT 0 0` on a connection that wrote nothing answers at once with the replicas
        connected (no `INFO`, which the services' ACL users are not granted); on one that
        wrote, with those that confirmed its last write. So it goes on a new connection.
        """
        now = time.monotonic()
        if self._auto and self.min_replicas <= 0 and now - self._looked >= AUTO_RECHECK_S:
            self._looked = now
            if self.cluster:  # every master's: the least of them decides
                cluster = cast(RedisCluster, self.redis)
                counts = await cluster.execute_command(
                    "WAIT", 0, 0, target_nodes=RedisCluster.PRIMARIES
                )
                # redis-py takes the least itself (the command's response policy),
                # or answers by node.
                least = min(map(int, counts.values())) if isinstance(counts, dict) else counts
                self.min_replicas = min(1, int(least))
                return max(0, self.min_replicas)
            conn = self.redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            try:
                await conn.send_command("WAIT", 0, 0)
                connected = int(await conn.read_response())
            finally:
                await conn.disconnect()
            self.min_replicas = min(1, connected)
        return max(0, self.min_replicas)

    async def close(self) -> None:
        await self.redis.aclose()

    async def check_partitions(self) -> None:
        """Record the partition count (and slot tags, if the keys have them) on first use;
        refuse to run with another count or tags (`log_keys` reads them instead)."""
        config = self.keys.config
        pipe = self.redis.pipeline(transaction=False)  # one key, in order: each NX holds
        pipe.hsetnx(config, "partitions", self.keys.partitions)
        if self.keys.slotted:
            pipe.hsetnx(config, "tags", SLOT_TAGS)
        pipe.hmget(config, ["partitions", "tags"])
        *_, (stored, tags) = await pipe.execute()
        if int(stored or 0) != self.keys.partitions:
            raise PartitionMismatch(
                f"the log under prefix {self.keys.prefix!r} has {int(stored or 0)} partitions; "
                f"DATELINE_PARTITIONS is {self.keys.partitions}. Set it to {int(stored or 0)}, "
                "or unset it."
            )
        if (tags == SLOT_TAGS.encode()) != self.keys.slotted:
            made = "on a cluster (slot tags)" if tags else "on one server ({pN} tags)"
            raise PartitionMismatch(
                f"the log under prefix {self.keys.prefix!r} was made {made}: open it with "
                "the keys its config names (`log_keys`)"
            )

    async def append(
        self,
        updates: Sequence[bytes | str | Update | Decoded],
        *,
        atomic: bool = False,
        editor: bool = False,
    ) -> list[AppendResult]:
        """Validate and append a batch: one result per update, in order.

        Invalid updates are refused and the others still land, unless `atomic`:
        then any refusal (invalid or conflict) writes nothing at all. `editor`: the
        writer holds the editor right (rule 5), and the records say so.
        """
        return await self.submit(self.prepare(updates, atomic=atomic, editor=editor))

    async def compared(self, prepared: Prepared, results: list[AppendResult]) -> list[AppendResult]:
        """`results`, each duplicate of its story compared with the original the log keeps,
        and where the content differs, saying so (`differs`, and a `reason`): the
        originals read by their positions, one script call a partition, only when a batch
        has duplicates. An original not found where its dedup entry says is not compared,
        nor are any where the read fails (logged as a warning)."""
        dups = _duplicates(results)
        if not dups:
            return results
        by_part: dict[int, list[AppendResult]] = {}
        for r in dups:
            by_part.setdefault(int(cast(str, r.position).split(":", 1)[0]), []).append(r)
        try:
            read = await gathered(*(self._originals(p, rs) for p, rs in by_part.items()))
        except RedisError as exc:
            # The answers stand (the originals are in the log, nothing was written); only
            # what differs is not known. A user without XREVRANGE (an ACL older than
            # deploy/users.acl's), or a connection lost after the append.
            logger.warning(
                "duplicates not compared with their originals",
                duplicates=len(dups),
                error=f"{type(exc).__name__}: {exc}",
            )
            return results
        found = {
            r.index: data
            for rs, got in zip(by_part.values(), read, strict=True)
            for r, data in zip(rs, got, strict=True)
        }
        sent = _bodies(prepared)
        told = list(results)
        for at, r in enumerate(results):
            if (data := found.get(r.index)) and (differs := differences(data, sent[r.index])):
                told[at] = msgspec.structs.replace(r, differs=differs, reason=said(differs))
        return told

    async def _originals(self, partition: int, dups: list[AppendResult]) -> list[bytes | None]:
        args: list[str] = []
        for r in dups:
            args += ("1", cast(str, r.position).split(":", 1)[1])
        return cast(
            list[bytes | None], await self._read_originals([self.keys.log(partition)], args)
        )

    async def append_stream(
        self,
        batches: Iterable[Sequence[bytes | str | Update | Decoded]],
        *,
        atomic: bool = False,
        editor: bool = False,
    ) -> AsyncGenerator[list[AppendResult], None]:
        """Append batch after batch, in order, yielding each batch's results.

        For bulk loads. One connection carries the batches, and Redis runs the
        commands of one connection in the order they were sent, so log order is
        input order. Batches k+1 and k+2 are sent before batch k's reply is read
        (`AHEAD`), each validated while the server runs the ones before it: client
        and server work at once. A batch with duplicates has them compared with their
        originals (`compared`, on another connection) while the next is prepared and sent.
        Each batch goes as EVAL (not EVALSHA), so a flushed script cache cannot
        fail batches already queued behind it; on a sealed log, as FCALL. If anything
        fails, the connection is dropped (replies may be pending on it); re-sending the
        batches is safe, since appends are idempotent by source and id. On a cluster,
        batch after batch, each as `append` sends it.
        """
        if self.cluster:
            for batch in batches:
                yield await self.append(batch, atomic=atomic, editor=editor)
            return
        pool = self.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        function: str | None = None
        # Batches whose duplicates are being compared with their originals (on another
        # connection), in order: the next batch is prepared and sent meanwhile.
        comparing: deque[asyncio.Future[list[AppendResult]]] = deque()
        try:
            in_flight: deque[Prepared] = deque()
            wanted, timeout = await self.resolve_replicas(), self.replica_timeout_ms
            function = self._function or as_text_or_none(
                await self.redis.hget(self.keys.seal(0), "function")
            )
            for batch in batches:
                prepared = self.prepare(batch, atomic=atomic, editor=editor)
                await _send(conn, prepared, function, wanted, timeout)
                in_flight.append(prepared)
                if len(in_flight) > AHEAD:
                    done = in_flight.popleft()
                    results = await _receive(conn, done, wanted, timeout)
                    comparing.append(self._comparing(done, results))
                    # At most one batch compared while the next is prepared; one with
                    # no duplicates is ready at once, and yielded as it comes.
                    while comparing and (len(comparing) > 1 or comparing[0].done()):
                        yield await comparing.popleft()
            while in_flight:
                done = in_flight.popleft()
                comparing.append(self._comparing(done, await _receive(conn, done, wanted, timeout)))
            while comparing:
                yield await comparing.popleft()
        except BaseException as e:
            await conn.disconnect()
            if function and "function not found" in str(e).lower():
                raise AppendFunctionMissing(function) from e
            if isinstance(e, ResponseError) and (moving := _moving(e)) is not None:
                raise moving from e
            raise
        finally:
            for left in comparing:
                left.cancel()
            await pool.release(conn)

    def _comparing(
        self, prepared: Prepared, results: list[AppendResult]
    ) -> asyncio.Future[list[AppendResult]]:
        """`compared`, started: done already where the batch has no duplicate to read."""
        if not _duplicates(results):
            ready: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
            ready.set_result(results)
            return ready
        return asyncio.ensure_future(self.compared(prepared, results))

    def prepare(
        self,
        updates: Sequence[bytes | str | Update | Decoded],
        *,
        atomic: bool,
        editor: bool = False,
    ) -> Prepared:
        """Validate a batch and pack the script's arguments. CPU only, no I/O."""
        if len(updates) > MAX_BATCH_UPDATES:
            raise BatchTooLarge(
                f"batch: {len(updates)} updates, over the limit of {MAX_BATCH_UPDATES}"
            )
        results: list[AppendResult | None] = [None] * len(updates)
        valid: list[tuple[int, Update]] = []
        key_index: dict[str, int] = {}
        by_story: dict[str, tuple[int, int, int, int]] = {}
        meta: list[int | str] = []  # seven a valid update (append.lua's ARGV[2])
        bodies: list[bytes] = []
        keys = self.keys
        stories, logs, ids = self._partition_keys
        for i, item in enumerate(updates):
            try:
                update, body = _validated(item)
            except InvalidUpdate as exc:
                results[i] = AppendResult(
                    i, "invalid", field=exc.problem.field, reason=exc.problem.message
                )
                continue
            if editor:  # a log field, like version: producers cannot send it
                body = body[:-1] + b',"editor":true}'
            valid.append((i, update))
            # A batch names a story many times: its keys' places are found once.
            if (placed := by_story.get(update.subject)) is None:
                part = keys.partition(update.subject)
                placed = by_story[update.subject] = (
                    key_index.setdefault(stories[part] + update.subject, len(key_index) + 1),
                    key_index.setdefault(logs[part], len(key_index) + 1),
                    key_index.setdefault(ids[part], len(key_index) + 1),
                    part,
                )
            expected = update.expectedversion
            meta += placed
            meta += (
                dedup_field(update.source, update.id),
                -1 if expected is None else expected,
                len(body) - 1,
            )
            bodies.append(body[:-1])
        size = sum(map(len, bodies)) + len(bodies)
        if size > MAX_BATCH_BYTES:
            raise BatchTooLarge(f"batch: {size} bytes, over the limit of {MAX_BATCH_BYTES}")
        fields = meta[4::7]
        distinct = "1" if len(set(fields)) == len(fields) else "0"
        args = ["1" if atomic else "0", _pack(meta), b"".join(bodies), "1", distinct]
        return Prepared(results, valid, list(key_index), args, atomic)

    async def submit(self, prepared: Prepared) -> list[AppendResult]:
        """Run the append script for a prepared batch, then wait for `min_replicas`."""
        if not _needs_server(prepared):
            return _finish(prepared, None)
        wanted = await self.resolve_replicas()
        if self.cluster:
            return await self._submit_parts(prepared, wanted)
        function = self._function  # concurrent appends: another may learn it first
        try:
            replies, reached = await self._run(prepared, wanted, function)
        except ResponseError as e:  # nothing was written
            if (moving := _moving(e)) is not None:
                raise moving from e
            if function or (named := _sealed_by(e)) is None:
                raise
            self._function = named
            replies, reached = await self._run(prepared, wanted, named)
        results = await self.compared(prepared, _finish(prepared, replies))
        if reached < wanted:
            raise NotReplicated(wanted, reached, self.replica_timeout_ms, results)
        return results

    async def _submit_parts(self, prepared: Prepared, wanted: int) -> list[AppendResult]:
        """On a cluster: one call per partition, side by side; results in input order."""
        parts = split(prepared)
        if prepared.atomic and len(parts) > 1:
            named = sorted({self.keys.partition(u.subject) for _, u in prepared.valid})
            raise CrossPartitionBatch(
                "an atomic batch must keep to one partition on a cluster (one slot, one "
                f"script call): its stories are in partitions {named}. Send one batch a "
                "story, or stories that share a partition"
            )
        done = await gathered(*(self._run_part(p, wanted) for p in parts))  # then answer
        results = list(prepared.results)
        reached = wanted
        for part, (replies, confirmed) in zip(parts, done, strict=True):
            for (i, update), reply in zip(part.valid, _lines(replies), strict=True):
                results[i] = _result(i, update, reply)
            reached = min(reached, confirmed)
        finished = await self.compared(prepared, [r for r in results if r is not None])
        if reached < wanted:
            raise NotReplicated(wanted, reached, self.replica_timeout_ms, finished)
        return finished

    async def _run_part(self, part: Prepared, wanted: int) -> tuple[Any, int]:
        """`_run_part_once`, again while the cluster is finding its feet (a node lost, a
        replica taking over): appends are idempotent, and a duplicate is waited for too.
        After `PART_RETRIES_S`, the error goes to the caller (ingest: a 503)."""
        for pause in (*PART_RETRIES_S, None):
            try:
                return await self._run_part_once(part, wanted)
            except CLUSTER_TRANSIENT:
                if pause is None:
                    raise
                await asyncio.sleep(pause)
        raise AssertionError("unreachable: the last pause is None")

    async def _run_part_once(self, part: Prepared, wanted: int) -> tuple[Any, int]:
        """One partition's append (and `WAIT` on the connection that wrote it, at the node
        that owns the slot: keyless, it would go to any node and count nothing)."""
        cluster = appender_of(self.redis)
        await cluster.initialize()  # at once when it knows the layout already
        node = cluster.get_node_from_key(part.keys[0])
        for _ in range(2):
            pipe = cluster.pipeline(transaction=False)
            function = self._function  # the parts run side by side: one may learn it first
            args = (len(part.keys), *part.keys, *_wire(function, part.args))
            if function:
                pipe.execute_command("FCALL", function, *args)
            else:  # redis-py's cluster pipelines refuse EVALSHA
                pipe.execute_command("EVAL", APPEND_SCRIPT, *args)
            if wanted > 0:
                pipe.execute_command("WAIT", wanted, self.replica_timeout_ms, target_nodes=node)
            replies = await pipe.execute(raise_on_error=False)
            if isinstance(e := replies[0], Exception):
                if not isinstance(e, ResponseError):  # lost on the way: 503, sent again
                    raise e
                # Refused by the server: nothing was written.
                if (moving := _moving(e)) is not None:
                    raise moving from e
                if function and "function not found" in str(e).lower():
                    raise AppendFunctionMissing(function) from e
                if function or (named := _sealed_by(e)) is None:
                    raise e
                self._function = named
                continue
            return replies[0], _confirmed(replies[1]) if wanted > 0 else 0
        raise AssertionError("unreachable: a SEALED refusal names the function")

    async def _run(self, prepared: Prepared, wanted: int, function: str | None) -> tuple[Any, int]:
        """The append (`function`, or the script), then `WAIT` if `wanted`: one round trip."""
        if function:
            try:
                return await self._append_and_wait(prepared, wanted, function)
            except ResponseError as e:
                if "function not found" in str(e).lower():
                    raise AppendFunctionMissing(function) from e
                raise
        if wanted <= 0:
            return await self._append(keys=prepared.keys, args=prepared.args), 0
        try:
            return await self._append_and_wait(prepared, wanted, None)
        except NoScriptError:  # a restarted or flushed server: nothing was written
            # By its text, which loads it as it runs (`scripts.Script`).
            return await self._append_and_wait(prepared, wanted, None, by_text=True)

    async def _append_and_wait(
        self, prepared: Prepared, wanted: int, function: str | None, *, by_text: bool = False
    ) -> tuple[Any, int]:
        # WAIT on the connection that wrote counts that write. Duplicates are waited for
        # too: their original may be one whose wait failed. EVALSHA, not the script
        # object: in a pipeline, redis-py asks SCRIPT EXISTS first, every time.
        pipe = self.redis.pipeline(transaction=False)
        args = (len(prepared.keys), *prepared.keys, *_wire(function, prepared.args))
        if function:
            pipe.fcall(function, *args)
        elif by_text:
            pipe.eval(APPEND_SCRIPT, *args)
        else:
            pipe.evalsha(self._append.sha, *args)
        if wanted > 0:
            pipe.wait(wanted, self.replica_timeout_ms)
        replies = await pipe.execute(raise_on_error=False)
        if isinstance(replies[0], Exception):
            raise replies[0]
        return replies[0], _confirmed(replies[1]) if wanted > 0 else 0

    async def version(self, story: str) -> int:
        """How many updates the story holds (0 if none)."""
        return int(await self.redis.llen(self.keys.story(story)))

    async def read_story_json(
        self,
        story: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> list[bytes]:
        """The story's records as stored (JSON), versions from..to inclusive.

        `as_of` keeps only what had been recorded by then: what the desk knew. A
        story's records are in recordedtime order (its partition's stream ids only
        grow), so that is a prefix of the history.
        """
        # Redis list indexes are signed 64-bit; any version past them means "all of it".
        stop = -1 if to_version is None or to_version > _LAST_INDEX else to_version - 1
        part = self.keys.partition(story)
        await self.sealing.refresh(self.redis)
        raw = self.sealing.listed_all(
            part,
            cast(
                list[bytes],
                await self.redis.lrange(self.keys.story(story, part), from_version - 1, stop),
            ),
        )
        if as_of is None:
            return raw
        return list(takewhile(lambda r: _stamp(r).recordedtime <= as_of, raw))

    async def read_story(
        self,
        story: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> list[Update]:
        raw = await self.read_story_json(
            story, from_version=from_version, to_version=to_version, as_of=as_of
        )
        return decode_records(raw)

    async def read_partition(
        self, partition: int, *, after: str = "0-0", count: int = 1000
    ) -> list[tuple[str, Update]]:
        """Up to `count` records of one partition after stream id `after`, in log order."""
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self.redis.xrange(self.keys.log(partition), min=f"({after}", count=count),
        )
        await self.sealing.refresh(self.redis)
        opened = self.sealing.entry
        return [
            (eid.decode(), decode_record(opened(partition, eid.decode(), fields[b"__data__"])))
            for eid, fields in entries
        ]


class _Stamp(msgspec.Struct):
    recordedtime: datetime


_stamp = msgspec.json.Decoder(_Stamp).decode


class _Subject(msgspec.Struct):
    subject: str


_subject = msgspec.json.Decoder(_Subject).decode


def story_of(raw: bytes) -> str:
    """The story id of a stored record, without decoding the rest of it."""
    return _subject(raw).subject


def story_or_none(raw: bytes) -> str | None:
    """`story_of`, or None for a log entry that is no update (a reader says so)."""
    try:
        return story_of(raw)
    except ValueError:  # msgspec's DecodeError and ValidationError
        return None


_SEALED = re.compile(r"\bSEALED (\w*)")


def _moving(error: ResponseError) -> LogMoving | None:
    """What a `RELOCATED` refusal says, as the error a caller can tell apart. (A pipeline
    wraps the reply: "Command # 1 (EVAL <the script's start>) ... caused error: ...".)"""
    said = str(error).rsplit("caused error: ", 1)[-1].removeprefix("('").removesuffix("',)")
    return LogMoving(said.removeprefix("RELOCATED ")) if said.startswith("RELOCATED ") else None


def _sealed_by(error: ResponseError) -> str | None:
    """The append function a `SEALED` refusal names (a pipeline wraps the reply)."""
    found = _SEALED.search(str(error))
    return found[1] if found else None


def _wire(function: str | None, args: list[Any]) -> list[Any]:
    """The append's arguments for `function` (None: this release's script). A sealed
    log's function may be an older release's for a while, until a projector of this
    release starts and names its own (`seal.py`): that one takes a table an update."""
    if not function or function.startswith(FLAT_FUNCTION):
        return args
    return [args[0], _pack(_rows(args[1])), *args[2:]]


def _rows(columns: bytes) -> list[list[Any]]:
    """`prepare`'s flat columns (append.lua's ARGV[2]) as a row of seven an update."""
    flat = msgspec.msgpack.decode(columns)
    return [flat[j : j + 7] for j in range(0, len(flat), 7)]


def split(prepared: Prepared) -> list[Prepared]:
    """A prepared batch as one per partition it touches (in order of first touch), each
    with its own keys and script arguments: what a cluster runs, a slot a call."""
    meta = _rows(prepared.args[1])
    blob = prepared.args[2]
    groups: dict[int, tuple[list[tuple[int, Update]], dict[str, int], list[Any], list[bytes]]] = {}
    offset = 0
    for (i, update), m in zip(prepared.valid, meta, strict=True):
        story, log, ids, part, field, expected, size = m
        valid, index, rows, bodies = groups.setdefault(part, ([], {}, [], []))
        valid.append((i, update))
        own = [index.setdefault(prepared.keys[k - 1], len(index) + 1) for k in (story, log, ids)]
        rows += (*own, part, field, expected, size)
        bodies.append(blob[offset : offset + size])
        offset += size
    return [
        Prepared(
            prepared.results,
            valid,
            list(index),
            [prepared.args[0], _pack(rows), b"".join(bodies), *prepared.args[3:]],
            prepared.atomic,
        )
        for valid, index, rows, bodies in groups.values()
    ]


def _bodies(prepared: Prepared) -> dict[int, bytes]:
    """Each update's JSON as `prepare` packed it, by its index in the batch."""
    blob = prepared.args[2]
    bodies, offset = {}, 0
    for (i, _), row in zip(prepared.valid, _rows(prepared.args[1]), strict=True):
        bodies[i] = blob[offset : offset + row[6]] + b"}"
        offset += row[6]
    return bodies


def _needs_server(prepared: Prepared) -> bool:
    """False when every update was refused already, or an atomic batch has a refusal."""
    refused_here = len(prepared.valid) < len(prepared.results)
    return bool(prepared.valid) and not (prepared.atomic and refused_here)


async def _send(
    conn: AbstractConnection, prepared: Prepared, function: str | None, wanted: int, timeout_ms: int
) -> None:
    """A batch of `append_stream` on its connection, its reply left to read, and the
    replicas' `WAIT` after it where they are waited for."""
    if not _needs_server(prepared):
        return
    call = ("FCALL", function) if function else ("EVAL", APPEND_SCRIPT)
    await conn.send_command(
        *call, len(prepared.keys), *prepared.keys, *_wire(function, prepared.args)
    )
    if wanted > 0:
        await conn.send_command("WAIT", wanted, timeout_ms)


def _duplicates(results: list[AppendResult]) -> list[AppendResult]:
    """The duplicates of their own story (`reason` says another's), by position."""
    return [r for r in results if r.status == "duplicate" and r.reason is None and r.position]


async def _receive(
    conn: AbstractConnection, prepared: Prepared, wanted: int, timeout_ms: int
) -> list[AppendResult]:
    if not _needs_server(prepared):
        return _finish(prepared, None)
    results = _finish(prepared, await conn.read_response())
    if wanted > 0 and (reached := int(await conn.read_response())) < wanted:
        raise NotReplicated(wanted, reached, timeout_ms, results)
    return results


def _finish(prepared: Prepared, replies: list[Any] | None) -> list[AppendResult]:
    """One result per update, in order, from the script's replies (None: not sent)."""
    results = list(prepared.results)
    if replies is None:
        checked = dict(prepared.valid)
        return [results[i] or _aborted(i, checked[i]) for i in range(len(results))]
    for (i, update), reply in zip(prepared.valid, _lines(replies), strict=True):
        results[i] = _result(i, update, reply)
    return [r for r in results if r is not None]


def _lines(replies: bytes | list[Any]) -> list[bytes] | list[Any]:
    """The script's replies, one an update: its lines (append.lua's ARGV[4]), or the
    tables a sealed log's function of an older release answers with."""
    return replies.split(b"\n") if isinstance(replies, bytes) else replies


def _validated(item: bytes | str | Update | Decoded) -> tuple[Update, bytes]:
    if isinstance(item, Decoded):  # validated by the caller already (HTTP ingest)
        return item.update, item.body
    if isinstance(item, bytes | str):
        decoded = decode_update(item)
        return decoded.update, decoded.body
    # A Struct built in Python was checked by __post_init__; re-decode its JSON so
    # that it passes exactly the producer rules (no log fields, size limit).
    decoded = decode_update(_encode(item))
    return decoded.update, decoded.body


def _aborted(index: int, update: Update) -> AppendResult:
    return AppendResult(
        index,
        "aborted",
        id=update.id,
        source=update.source,
        subject=update.subject,
        reason="not written: the batch is atomic and another update in it was refused",
    )


def _result(index: int, update: Update, reply: bytes | list[Any]) -> AppendResult:
    if isinstance(reply, bytes):
        return _result_of_line(index, update, reply)
    status = reply[0]
    if status in {b"appended", "appended"}:  # the usual reply: no dict, no decode
        return _appended(index, update, int(reply[1]), as_text(reply[2]))
    who: dict[str, Any] = {"id": update.id, "source": update.source, "subject": update.subject}
    status = as_text(status)
    if status == "duplicate":
        version, position, story = as_text(reply[1]).split(" ", 2)
        reason = None if story == update.subject else f"this id was used for story {story!r}"
        return AppendResult(
            index, "duplicate", version=int(version), position=position, reason=reason, **who
        )
    if status == "conflict":
        return AppendResult(
            index,
            "conflict",
            current_version=int(reply[1]),
            field="expectedversion",
            reason=f"expected {update.expectedversion} updates, the story holds {int(reply[1])}",
            **who,
        )
    return _aborted(index, update)


def _appended(index: int, update: Update, version: int, position: str) -> AppendResult:
    return AppendResult(
        index,
        "appended",
        update.id,
        update.source,
        update.subject,
        version=version,
        position=position,
    )


def _result_of_line(index: int, update: Update, line: bytes) -> AppendResult:
    """`_result` of a line of the script's text: "a <version> <position>", "d <version>
    <position> <story>", "c <current version>" or "x"."""
    kind = line[:1]
    if kind == b"a":  # the usual reply first
        _, version, position = line.split(b" ")
        return _appended(index, update, int(version), position.decode())
    if kind == b"d":
        return _result(index, update, [b"duplicate", line[2:]])
    if kind == b"c":
        return _result(index, update, [b"conflict", line[2:]])
    if kind == b"x":
        return _aborted(index, update)
    raise ValueError(f"the append script answered {line!r}, which is no reply of it")


_DEMOTED = ("UNBLOCKED", "WAIT cannot be used with replica instances")
"""What `WAIT` answers on a node that is no longer a primary: it stepped down under the
wait, or, on a cluster, the write was redirected to the slot's new master while the
`WAIT` went to the old one."""


def _confirmed(reply: object) -> int:
    """How many replicas `WAIT` counted. A node no longer a primary (`_DEMOTED`) counts
    none: what it took may be gone with its role, so the feed is told to send it again.
    Any other error is raised (a `NOPERM` is not a slow replica)."""
    if isinstance(reply, Exception):
        if any(said in str(reply) for said in _DEMOTED):
            return 0
        raise reply
    return int(cast(int, reply))
