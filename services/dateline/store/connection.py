"""The Redis client every service uses: redis-py's asyncio client, commands packed by
hiredis, sends that give way to a cancellation.

redis-py packs a command in Python on asyncio connections and in C (hiredis) on
blocking ones (redis/redis-py#4176, open). The projector's commit sends a few hundred
arguments a batch, and packing them was a fifth of its time; hiredis packs the same
bytes. What hiredis does not take (a bytearray; a None or a bool, which redis-py
refuses with its own error) goes to redis-py's packing.

redis-py bounds each send with `asyncio.wait_for` (its socket timeout, 5 s by default),
and on Python 3.11 wait_for loses a cancellation that lands as the send completes
(python/cpython#86296): the cancelled task carries on. Measured: 339 of 600 PINGs
cancelled a few loop turns after they started returned normally; a live stream whose
client had gone then ran for ever (a hang in the tests, one run in about twenty). Our
connections send under `asyncio.timeout` instead, which keeps the cancellation.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, TypeVar, cast

import hiredis
import redis.asyncio as aioredis
from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    AuthenticationError,
    ClusterCrossSlotError,
    ClusterError,
    MovedError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from dateline.store.together import gathered

T = TypeVar("T")

_WAIT_FOR_KEEPS_CANCELS = sys.version_info >= (3, 12)  # wait_for is built on timeout there

UNREACHABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    SlotNotCoveredError,
    TryAgainError,
)
"""What a call raises while the server is down, restarting or loading its AOF (redis-py's
BusyLoadingError is a ConnectionError), while a cluster finds its feet after losing a
node (a shard without a master, a slot not covered yet), or while a slot moves to
another node (TRYAGAIN, `SlotMoving`, and redis-py's `ClusterError` once it has tried a
command as often as it will: its TTL): the services wait it out, and say so."""


class SlotMoving(TryAgainError):
    """A script reached a key its node no longer holds, or does not hold yet: the key's
    slot is moving to another node (a resharding). The server raises it at that call;
    the scripts that write reach every key they did not declare before their first
    write (the append's seal marker), or declare them all (the projector's commit), so
    nothing was written. Sent again, it runs where the keys are."""


_NOT_LOCAL = "Script attempted to access a non local key"


PROBE_S = 1.0
"""How long a readiness probe, a scrape of `/metrics` or a disk's probe waits on a server
before answering without it. A server that neither answers nor closes the connection
(stopped, its disk hung under `appendfsync always`, its packets dropped) held them for
the client's socket timeout (5 s) on each try and each call: the query service's scrape
30 to 45 s, past Prometheus's scrape timeout (10 s), and `/readyz` 15 s, past the
healthchecks' 2 (SIGSTOP, 2026-12-06). A server that answers takes a millisecond."""


async def within(seconds: float, call: Awaitable[T], of: aioredis.Redis | None = None) -> T:
    """`call`'s answer, or redis-py's TimeoutError (one of `UNREACHABLE`) once `seconds`
    have passed without it, naming the server `of` if given: a service with two servers
    (the log's, the store of read models') said "no answer within 1 s" of either. The
    call is cancelled; redis-py then closes its connection, whose reply would come to
    the next command."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError:
        where = "" if of is None else f" (server {server_of(of)})"
        raise RedisTimeoutError(f"no answer within {seconds:g} s{where}") from None


def server_of(client: aioredis.Redis | RedisCluster) -> str:
    """Where `client` sends its commands, as redis-py names a server in its errors:
    `host:port`, a Unix socket's path, or a cluster by the node it was told first."""
    if isinstance(client, RedisCluster):
        first = next(iter(client.nodes_manager.startup_nodes.values()), None)
        return "a cluster" if first is None else f"the cluster at {first.host}:{first.port}"
    given = client.connection_pool.connection_kwargs
    return str(given["path"]) if "path" in given else f"{given.get('host')}:{given.get('port')}"


def described(exc: BaseException) -> str:
    """`repr(exc)` as Python writes it, the message included. redis-py 8 writes its own
    errors' as a kind and a class alone ("network:ConnectionError"), and a log line
    lost which server refused what, and why; this is what every log line gives."""
    if isinstance(exc, RedisError):
        return f"{type(exc).__name__}({str(exc)!r})"
    return repr(exc)


def outage(exc: BaseException) -> str:
    """How a log line of an `UNREACHABLE` error begins. redis-py's `AuthenticationError`
    is a `ConnectionError` too, and a service waits it out like an outage (ops may put
    the password back, or restart the service with the new one); but the server is there
    and refused the credentials, and a line saying "unreachable" sends on-call to the
    network, not to the password rotated under the service."""
    if isinstance(exc, AuthenticationError):
        return "Redis refused the credentials"
    if isinstance(exc, TryAgainError):
        return "Redis Cluster is moving a slot to another node"
    if type(exc) is ClusterError:  # its TTL: redirected, or refused, at every try
        return "Redis Cluster did not settle where a key is (a slot moving, or a failover)"
    return "Redis unreachable"


def refuses_writes(exc: BaseException) -> bool:
    """A server that answers but refuses every write for now: over its `maxmemory`
    (`OOM`, under noeviction), unable to write its AOF (`MISCONF`: a full disk), short
    of the replicas its `min-replicas-to-write` asks for (`NOREPLICAS`), or a replica
    (`READONLY`). The server's state, not the command's fault: the same write goes
    through once ops made room or the replicas are back, so it is retried, never held
    against an update (the kit parks nothing for it) nor answered as a bug (a 503)."""
    return write_refusal(exc) is not None


def out_of_room(exc: BaseException) -> bool:
    """`refuses_writes` until ops make room: out of memory, or of disk."""
    return write_refusal(exc) in ("OOM", "MISCONF")


def write_refusal(exc: BaseException) -> str | None:
    """The error code of a refusal `refuses_writes` means (`OOM`, ...), else None."""
    if isinstance(exc, OutOfMemoryError):  # redis-py took the code off these two
        return "OOM"
    if isinstance(exc, ReadOnlyError):
        return "READONLY"
    if not isinstance(exc, ResponseError):
        return None
    text = str(exc)
    # A pipeline's puts the command before the server's words: "Command # 1 (HSETNX ...)
    # of pipeline caused error: ('NOREPLICAS Not enough good replicas to write.',)".
    if _IN_A_PIPELINE in text:
        text = text.rpartition(_IN_A_PIPELINE)[2].lstrip("('\"")
    # Redis 6 wraps an error a script's call met: "Error running script (call to f_...):
    # @user_script:12: -OOM command not allowed ..." (redis-py took "ERR" off); Redis 7
    # and Valkey pass the call's own error on.
    if text.startswith("Error running script"):
        text = text.partition(": -")[2]
    code = text.split(" ", 1)[0]
    return code if code in _REFUSALS else None


_REFUSALS = ("OOM", "MISCONF", "NOREPLICAS", "READONLY")
_IN_A_PIPELINE = " of pipeline caused error: "


LARGE = 16_384
"""An argument of more bytes than this is sent as it is, not copied into the command."""
_FEW = 16
"""The most words a command may have for its arguments to be looked through for one."""


def _packed(args: tuple[EncodableT, ...]) -> list[bytes] | None:
    """The command in RESP, or None where hiredis does not take an argument."""
    head = args[0]
    # As redis-py does: "CONFIG GET" is sent as two words.
    if isinstance(head, str):
        args = (*head.encode().split(), *args[1:])
    elif isinstance(head, bytes) and b" " in head:
        args = (*head.split(), *args[1:])
    # hiredis copies an argument at about 1.1 ns a byte (a 700 KB one: 0.9 ms, where a
    # join takes 33 us). The commands that carry a large one (an append's bodies; one
    # long story's state written alone) have a few words; a command of many (a commit,
    # a rebuild's MSET of a chunk of stories) goes to hiredis whole, since looking
    # through its words would cost more than it could find.
    try:
        if len(args) <= _FEW and any(type(a) is bytes and len(a) > LARGE for a in args):
            return _around(args)
        return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # it checks each item
    except TypeError:
        return None


def _around(args: tuple[EncodableT, ...]) -> list[bytes]:
    """A command in RESP as chunks, its large byte strings as they are: a socket's
    `writelines` sends them without copying them into one."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if type(arg) is bytes and len(arg) > LARGE:
            out += (b"$%d\r\n" % len(arg), arg, b"\r\n")
        else:  # packed as hiredis packs it, less its "*1\r\n"
            out.append(hiredis.pack_command((arg,))[4:])  # type: ignore[arg-type]
    return out


class OnACluster(ResponseError):
    """The server is a node of a Redis Cluster, and this client is a single server's
    (`connect`); `open_client` finds a cluster, and every service and command of
    dateline opens its clients with it."""


NOT_ON_A_CLUSTER = (
    "this client was made for a single server (`connect`): open it with `open_client`, "
    "which finds a cluster, or point REDIS_URL at a single server"
)


class _Packing(AbstractConnection):
    """Packs with hiredis; sends under `asyncio.timeout` rather than `asyncio.wait_for`;
    a write on a closed connection is a ConnectionError, whatever the transport raised."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if (placed := self._placed(exc)) is None:
                raise
            raise placed from exc
        except ResponseError as exc:
            if str(exc).startswith(_NOT_LOCAL):
                raise SlotMoving(f"{exc} (server {self._host_error()})") from exc
            raise

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        try:
            await self._sent(command, check_health)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if (placed := self._placed(exc)) is None:
                raise
            raise placed from exc

    def _placed(self, exc: RedisError) -> RedisError | None:
        """`exc`, naming the server. redis-py names it when a connection cannot be made,
        not when one breaks ("Connection closed by server.", "Timeout reading from
        socket"): a service with two servers (the log's and the store of read models')
        then logged an outage without saying which one was out."""
        where = self._host_error()
        return None if where in str(exc) else type(exc)(f"{exc} (server {where})")

    async def _sent(self, command: bytes | str | Iterable[bytes], check_health: bool) -> None:
        try:
            await self._send_bounded(command, check_health)
        except (AttributeError, TypeError, RuntimeError) as exc:
            # redis-py 8.1 lets a write on a connection closed under it (by the peer, or
            # by the cluster client dropping every connection after a node failed)
            # escape as the transport's own error: "'NoneType' object has no attribute
            # 'writelines'", uvloop's "the handler is closed". Not a RedisError, so no
            # retry saw it and a feed got a 500 mid-failover (redis-py #3546, #4287).
            if self.is_connected and not self._writer_closing():
                raise
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"the connection closed while writing: {exc}") from exc

    def _writer_closing(self) -> bool:
        writer = self._writer
        return writer is None or writer.transport.is_closing()

    async def _send_bounded(
        self, command: bytes | str | Iterable[bytes], check_health: bool
    ) -> None:
        timeout = self.socket_timeout
        if not timeout or _WAIT_FOR_KEEPS_CANCELS:
            await super().send_packed_command(command, check_health)
            return
        self.socket_timeout = None  # redis-py then sends without wait_for; we bound it
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health)
        except TimeoutError:  # our deadline (redis-py's own is RedisTimeoutError)
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


class _Sending(_Packing):
    """Says what a cluster's redirections mean to a client that is not a cluster's."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            # Without this, a service pointed at a cluster node fails on its first key
            # of another slot with a bare "MOVED 1234 127.0.0.1:7001", or "CROSSSLOT".
            if not isinstance(exc, AskError | ClusterCrossSlotError):  # MOVED is an AskError
                raise
            raise OnACluster(
                f"the server at {self._host_error()} is a Redis Cluster node (it answered "
                f"{type(exc).__name__} {str(exc)[:60]!r}); {NOT_ON_A_CLUSTER}"
            ) from exc


class Connection(_Sending, aioredis.Connection):
    pass


class UnixConnection(_Sending, aioredis.UnixDomainSocketConnection):
    pass


class SSLConnection(_Sending, aioredis.SSLConnection):
    pass


class ClusterConnection(_Packing, aioredis.Connection):
    """A cluster node's: its redirections are the cluster client's to follow."""


_PACKING: dict[type[Any], type[Any]] = {
    aioredis.Connection: Connection,
    aioredis.UnixDomainSocketConnection: UnixConnection,
    aioredis.SSLConnection: SSLConnection,
}


POOL_SIZE = 256
"""Connections a client opens at most. A request past them waits for one."""
POOL_WAIT_S = 10.0
"""How long it waits; then redis-py's ConnectionError, which the services answer 503."""


class QuickPool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool, with a short way through when nothing waits.

    Every command checks a connection out and back in. redis-py 8.1 does both under the
    pool's condition, a deadline, a lock for maintenance notifications, its metrics
    recorders and an event dispatch: 85 to 94 us of this process's CPU a PING, 62 to
    68 with this pool (20,000 PINGs in turn, `docs/projections.md`). While a connection
    is free and no caller waits, one is taken or given back as redis-py's own code
    does it, minus that ceremony; otherwise redis-py's path runs, so a caller that
    waits is woken as before, and no caller overtakes one that waits.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if self._waiting or not self._available_connections or self._in_maintenance:
            self._waiting += 1
            try:
                got = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                return cast(AbstractConnection, got)
            finally:
                self._waiting -= 1
        connection = self._available_connections.pop()
        self._in_use_connections.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        if self._waiting or self._in_maintenance:
            await super().release(connection)  # under the condition: it wakes a waiter
            return
        self._in_use_connections.remove(connection)
        if connection.should_reconnect():  # type: ignore[no-untyped-call]  # unannotated too
            await connection.disconnect()
        self._available_connections.append(connection)


async def in_turn(client: aioredis.Redis, *commands: tuple[EncodableT, ...]) -> list[Any]:
    """Send `commands` on one of the client's connections and read their raw replies in
    order: one round trip, as a pipeline makes it, without a pipeline object a call,
    its command stack and its reply callbacks (120 against 78 us of this process's CPU
    for a group read and a hash read, 10,000 in turn). Replies come as the server sends
    them (RESP3 maps, flat lists in RESP2); an error reply raises, as a pipeline's does.
    Not for a cluster client, whose commands go to their slots' nodes."""
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    try:
        await connection.send_packed_command(connection.pack_commands(commands))
        return await _replies(connection, len(commands))
    except BaseException:
        # A reply may still be on its way: the connection cannot serve anyone else.
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


async def sent(client: aioredis.Redis, commands: Sequence[tuple[EncodableT, ...]]) -> list[Any]:
    """Every command in one round trip, their replies in order. On one server `in_turn`
    (no pipeline object, command stack or reply callback: a rebuild sends a chunk's
    thousands of commands this way, twice a chunk); on a cluster a pipeline, which sends
    each to its slot's node."""
    if is_cluster(client):
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute()
    return await in_turn(client, *commands)


async def sent_whole(
    client: aioredis.Redis, commands: Sequence[tuple[EncodableT, ...]]
) -> list[Any]:
    """`sent`, applied as one: on one server inside MULTI and EXEC, their replies EXEC's.

    Under `appendfsync always` the server fsyncs after every event-loop turn that wrote,
    and it reads a pipeline of small commands 16 KB a turn: a rebuild's chunk of writes
    (2 to 4 MB) cost it a hundred fsyncs or more, and a worker's reads waited behind
    them. Queued, the commands write nothing until EXEC runs them in one turn: one fsync.
    A command that fails inside raises here, as `sent` would (the others are applied).
    On a cluster, whose commands go to many nodes and no transaction spans them: a
    transaction a slot (`_by_slot`), so each command's keys must lie in its first key's
    slot, as a partition's or a read-model region's do by their slot tags."""
    if is_cluster(client):
        return await _by_slot(cast(RedisCluster, client), commands, whole=True)
    return _applied((await in_turn(client, ("MULTI",), *commands, ("EXEC",)))[-1])


async def sent_by_slot(
    client: aioredis.Redis, commands: Sequence[tuple[EncodableT, ...]]
) -> list[Any]:
    """`sent` for commands whose keys lie in their first key's slot (a copy's or a
    rebuild's reads), on a cluster as `_by_slot` sends them, not through its pipeline.
    Not for the services' own calls: a pipeline sends a command again after a lost
    connection, as a failover needs; these raise, and a copy or rebuild says so."""
    if is_cluster(client):
        return await _by_slot(cast(RedisCluster, client), commands, whole=False)
    return await sent(client, commands)


async def _by_slot(
    cluster: RedisCluster, commands: Sequence[tuple[EncodableT, ...]], *, whole: bool
) -> list[Any]:
    """On a cluster, each slot's commands (by their first key) to the node that owns it,
    as `in_turn` sends them, inside MULTI and EXEC if `whole`, the slots side by side;
    the replies in order. Not through a cluster pipeline, which finds each command's
    slot with its parser and reads each reply under a timer of its own: most of a
    restore's CPU on a cluster (11.9k updates/s against 33k to 37k this way), and a
    third of a rebuild's. A slot that moved is followed once (`_following`); any other
    error raises."""
    by_slot: dict[int, list[int]] = {}
    for i, command in enumerate(commands):
        key = command[1]
        named = key.encode() if isinstance(key, str) else cast(bytes, key)
        by_slot.setdefault(key_slot(named), []).append(i)
    await cluster.initialize()  # at once when it knows the layout already
    parts = zip(by_slot, ([commands[i] for i in at] for at in by_slot.values()), strict=True)
    got = await gathered(*(_following(cluster, slot, part, whole) for slot, part in parts))
    replies: list[Any] = [None] * len(commands)
    for at, part in zip(by_slot.values(), got, strict=True):
        for i, reply in zip(at, part, strict=True):
            replies[i] = reply
    return replies


async def _following(
    cluster: RedisCluster, slot: int, commands: list[tuple[EncodableT, ...]], whole: bool
) -> list[Any]:
    """`_to_slot`, and once more at the node a `MOVED` names, as redis-py's own commands
    follow it (the slot moved since the client learnt the layout: a failover, a
    resharding). Nothing of the part was applied: a transaction's commands are refused
    as they are queued, and EXEC then runs none of them; reads are read again."""
    try:
        return await _to_slot(cluster, slot, commands, whole)
    except MovedError as moved:
        await cluster.nodes_manager.move_slot(moved)
        return await _to_slot(cluster, slot, commands, whole)


async def _to_slot(
    cluster: RedisCluster, slot: int, commands: list[tuple[EncodableT, ...]], whole: bool
) -> list[Any]:
    node = cluster.nodes_manager.get_node_from_slot(slot)  # SlotNotCoveredError if none
    connection = node.acquire_connection()
    sending = [("MULTI",), *commands, ("EXEC",)] if whole else commands
    try:
        await connection.send_packed_command(connection.pack_commands(sending))
        replies = await _replies(connection, len(sending))
    except BaseException:
        await connection.disconnect()  # a reply may still be on its way
        raise
    finally:
        node.release(connection)
    return _applied(replies[-1]) if whole else replies


def _applied(done: Any) -> list[Any]:
    """EXEC's replies; an error among them raises (the others were applied)."""
    if not isinstance(done, list):  # nil: only a WATCH, which none here sets, makes it
        raise ResponseError(f"the transaction was not run (EXEC answered {done!r})")
    for reply in done:
        if isinstance(reply, Exception):
            raise reply
    return done


def connect(
    url: str,
    *,
    retry_lost: bool = False,
    max_connections: int = POOL_SIZE,
    **options: Any,
) -> aioredis.Redis:
    """A client for `url` (redis://, rediss:// or unix://); closing it closes its pool.

    The pool waits for a free connection (`POOL_WAIT_S`) rather than failing at once:
    300 concurrent reads on a pool of 100 answered 175 of them 500 before.

    `retry_lost`: a command whose connection was lost is sent again on a new one (twice,
    with a short backoff), so the first request after the server came back does not
    fail on a connection that died with it; one that timed out is not. Only for
    clients whose every command is safe to run twice: reads, and the idempotent append
    script (the query service, ingest). Not for consumers: a group read whose reply was
    lost and then sent again would leave the first entries pending behind later ones;
    the runner catches the error instead and re-reads what is pending, in order.
    """
    if retry_lost:
        # Not a timeout: a server that said nothing for the socket timeout (stopped, its
        # disk hung) says nothing to the next try either, and a request then waited
        # three timeouts (15 s) for its 503, past a feed's or a browser's own deadline.
        lost = (RedisConnectionError,)
        backoff = ExponentialWithJitterBackoff(cap=0.5, base=0.05)
        options.setdefault("retry", Retry(backoff, 2, supported_errors=lost))
        options.setdefault("retry_on_error", list(lost))
    pool = QuickPool.from_url(url, max_connections=max_connections, timeout=POOL_WAIT_S, **options)
    pool.connection_class = _PACKING.get(pool.connection_class, pool.connection_class)
    return aioredis.Redis.from_pool(pool)


def _word(arg: Any) -> str:
    """A command's word as text, in capitals, whether given as str or bytes."""
    return (arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)).upper()


class _LocalKeys(AsyncCommandsParser):
    """The keys of `FCALL`, `FCALL_RO`, `XREAD` and `XREADGROUP`, read off their
    arguments. redis-py asks one fixed node `COMMAND GETKEYS` for commands whose keys
    move: two more round trips a call, and when that node is down, those calls fail to
    healthy masters too, before the client's retries could learn the new layout."""

    async def get_keys(self, *args: Any) -> tuple[str, ...] | None:
        name = _word(args[0]) if args else ""
        if name in ("FCALL", "FCALL_RO") and len(args) >= 3:
            return tuple(args[3 : 3 + int(args[2])]) or None
        if name in ("XREAD", "XREADGROUP"):
            # redis-py's `xreadgroup` and `xread` send their keywords as bytes: read as
            # `str(b"STREAMS")`, "B'STREAMS'", none was found, and every group read of
            # a projector on a cluster first asked a node for its keys: a round trip each.
            words = [_word(a) for a in args]
            if "STREAMS" in words:
                rest = args[words.index("STREAMS") + 1 :]
                return tuple(rest[: len(rest) // 2])
        keys = await super().get_keys(*args)
        return tuple(keys) if keys is not None else None


async def cluster_mode(url: str) -> bool:
    """Does `url` point at a node of a cluster? (`HELLO`, which every user may send:
    the services' ACL users have neither `INFO` nor `CLUSTER INFO`.)"""
    probe = aioredis.Redis.from_url(url)
    try:
        reply = await probe.execute_command("HELLO", "2")  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    except ResponseError:  # a server older than HELLO: no cluster dateline runs on
        return False
    finally:
        await probe.aclose()
    fields = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    mode = fields.get(b"mode", fields.get("mode", b""))
    return (mode.decode() if isinstance(mode, bytes) else str(mode)) == "cluster"


async def open_client(url: str, **options: Any) -> aioredis.Redis:
    """`connect`, or redis-py's cluster client where `url` is a node of a cluster (it
    finds the others). Typed as the plain client: the commands dateline sends are the
    same on both; what a cluster needs otherwise, the caller checks (`is_cluster`)."""
    if not await cluster_mode(url):
        return connect(url, **options)
    return cluster_client(url)


def cluster_client(url: str) -> aioredis.Redis:
    """`open_client`'s for a node of a cluster, where the caller knows it is one."""
    client = _cluster(ClusterClient, url)
    # For appends, a second client that never retries inside: redis-py's pipeline retry
    # drops the `target_nodes` of a `WAIT` (which then counts another node's replicas:
    # a false acknowledgement) and closes every connection of the client first, failing
    # requests to healthy masters too. The log retries its appends itself
    # (`Log._run_part`); everything else keeps redis-py's retries.
    client.appender = _cluster(RedisCluster, url, retry=Retry(NoBackoff(), 0))
    return cast(aioredis.Redis, client)


class ClusterClient(RedisCluster):
    """redis-py's cluster client, with the one the log appends through (`appender`)."""

    appender: RedisCluster

    async def aclose(self) -> None:
        await super().aclose()
        await self.appender.aclose()


def find_keys_locally(client: RedisCluster) -> None:
    """Give a cluster client made elsewhere (FastStream's) the command parser that
    finds the keys of `FCALL` and the stream reads itself (`_LocalKeys`), with what
    its own parser learnt of the commands, if it was initialized already."""
    parser = _LocalKeys()
    parser.commands = client.commands_parser.commands
    client.commands_parser = parser


def _cluster(kind: type[RedisCluster], url: str, **options: Any) -> Any:
    client = kind.from_url(url, **options)
    client.commands_parser = _LocalKeys()
    # Ours, not redis-py's plain one (which the cluster client insists on): hiredis
    # packing, the bounded send, the closed-writer errors made ConnectionErrors.
    client.nodes_manager.connection_kwargs["connection_class"] = ClusterConnection
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_class = ClusterConnection
    return client


def appender_of(client: aioredis.Redis) -> RedisCluster:
    """The cluster client a log appends through (`open_client`'s), else the client."""
    return getattr(client, "appender", None) or cast(RedisCluster, client)


def is_cluster(client: aioredis.Redis) -> bool:
    return isinstance(client, RedisCluster)


async def _replies(connection: AbstractConnection, n: int) -> list[Any]:
    """`n` replies, each within the connection's socket timeout of the one before.

    Under one deadline, moved on only when less than a timeout is left: redis-py bounds
    each read with an `asyncio.timeout` of its own, a timer made and cancelled a reply,
    and a rebuild's chunks read thousands of replies in turn (2.7% of its Python
    instructions, callgrind). A read then waits at most half as long again as
    redis-py's would before failing.
    """
    timeout = connection.socket_timeout
    if not timeout:
        return [await connection.read_response() for _ in range(n)]
    clock = asyncio.get_running_loop().time
    replies = []
    try:
        async with asyncio.timeout_at(clock() + 1.5 * timeout) as deadline:
            for _ in range(n):
                # math.inf: no timer of redis-py's for this read (ours bounds it)
                replies.append(await connection.read_response(timeout=math.inf))
                if (now := clock()) + timeout > cast(float, deadline.when()):
                    deadline.reschedule(now + 1.5 * timeout)
    except TimeoutError:
        raise RedisTimeoutError(
            f"no reply within {timeout} s (reply {len(replies) + 1} of {n})"
        ) from None
    return replies
