"""What a server says of its disk and memory: its AOF, a rewrite under way, the stalls
its latency monitor logged, and its memory against its `maxmemory`.

The p99 from a feed to a dashboard is governed by the disk under the log (an fsync of
5 to 40 ms every few seconds on the bench's VM, and a rewrite's child taking a core and
the disk for seconds: `docs/speed.md`). So `dateline status` shows them beside the
lag, for whoever asks at 3 a.m. why the dashboards were late (or why appends wait: a
server at its `maxmemory` under noeviction refuses writes). Read with INFO and
LATENCY LATEST, which a user may be refused (`deploy/users.acl` allows them to the
admin and query users); refused, the report says so and the rest of the status stands.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from dateline.store.connection import PROBE_S, UNREACHABLE, is_cluster, within
from dateline.store.replies import as_text

STALL_MS = 5
"""The latency monitor's threshold on the servers dateline starts: a stall is an event
(an fsync, an AOF write, a fork, a command) that took this long or longer."""


class Stall(msgspec.Struct, frozen=True):
    """The latency monitor's latest entry for one kind of event (LATENCY LATEST)."""

    event: str
    """`aof-fsync-always`, `aof-write`, `fork`, `command`, ... (Valkey's names)."""
    at: int
    """Unix seconds of the latest one."""
    latest_ms: int
    worst_ms: int
    """The longest since the server started or its monitor was reset."""


GROWTH_FROM = 2**20
"""What a rewrite must have left for the AOF's growth since to be said: a rewrite of an
empty server leaves a hundred bytes, and 0.3 MB read "3388x what the last rewrite left".
The dashboard's operations page keeps the same bound (`app.js`, `GROWTH_FROM`)."""


class Disk(msgspec.Struct, frozen=True, omit_defaults=True):
    """One server's disk as it reports it. A cluster has one a primary."""

    server: str
    aof: bool = False
    aof_bytes: int | None = None
    rewritten_bytes: int | None = None
    """What the last rewrite left: the AOF grows from there until the next."""
    rewriting: bool = False
    """A rewrite runs or is scheduled: its child takes a core and the disk."""
    last_rewrite: str | None = None
    """`ok` or `err`: how the last rewrite ended."""
    last_write: str | None = None
    """`err`: the last AOF write failed, and the server refuses writes until one works."""
    stalls: list[Stall] = msgspec.field(default_factory=list)
    used_bytes: int | None = None
    """Its memory in use (INFO memory's `used_memory`)."""
    max_bytes: int | None = None
    """Its `maxmemory`; 0 for none."""
    policy: str | None = None
    """Its `maxmemory-policy`: under `noeviction`, a server at its `maxmemory` refuses
    writes (`OOM`) until ops make room; dateline's appends and commits wait meanwhile."""
    problem: str | None = None
    """Why the server could not be asked (refused, unreachable): nothing else is known."""
    unreachable: bool = False
    """It could not be reached at all (`connection.UNREACHABLE`: no connection, a
    timeout, a cluster without a master for its slot), not only refused."""
    full: bool = False
    """At its `maxmemory` under `noeviction` (`full`): it refuses writes until ops make
    room. Said here so that no reader of the status repeats the rule."""


async def disks(client: aioredis.Redis) -> list[Disk]:
    """Every primary's disk: one server's, or each primary of a cluster, in address order."""
    if not is_cluster(client):
        kwargs = client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return [await _disk(client, str(where), {})]
    cluster = cast(Any, client)
    found = []
    for node in sorted(cluster.get_primaries(), key=lambda n: n.name):
        found.append(await _disk(client, node.name, {"target_nodes": node}))
    return found


async def _disk(client: aioredis.Redis, where: str, route: dict[str, Any]) -> Disk:
    found = await _asked(client, where, route)
    return msgspec.structs.replace(found, full=True) if full(found) else found


async def _read(client: aioredis.Redis, ask: Any, route: dict[str, Any]) -> tuple[Any, Any, Any]:
    info = await client.info("persistence", **route)
    memory = await client.info("memory", **route)
    return info, memory, await ask("LATENCY", "LATEST", **route)


async def _asked(client: aioredis.Redis, where: str, route: dict[str, Any]) -> Disk:
    ask = cast(Any, client).execute_command  # a cluster's node by `target_nodes`
    try:
        info, memory, latest = await within(PROBE_S, _read(client, ask, route))
    except NoPermissionError as exc:
        return Disk(where, problem=f"not allowed: {exc} (INFO and LATENCY LATEST)")
    except ResponseError as exc:  # a managed server may rename or withhold either command
        return Disk(where, problem=str(exc))
    except (RedisError, OSError) as exc:
        lost = isinstance(exc, UNREACHABLE)
        return Disk(where, problem=f"unreachable: {exc!r}", unreachable=lost)
    stalls = stalls_of(latest or [])
    used, most = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    policy = as_text(memory.get("maxmemory_policy", "")) or None
    if not int(info.get("aof_enabled", 0)):
        return Disk(where, stalls=stalls, used_bytes=used, max_bytes=most, policy=policy)
    return Disk(
        where,
        used_bytes=used,
        max_bytes=most,
        policy=policy,
        aof=True,
        aof_bytes=int(info["aof_current_size"]),
        rewritten_bytes=int(info["aof_base_size"]),
        rewriting=bool(int(info["aof_rewrite_in_progress"]) or int(info["aof_rewrite_scheduled"])),
        last_rewrite=as_text(info.get("aof_last_bgrewrite_status", "")) or None,
        last_write=as_text(info.get("aof_last_write_status", "")) or None,
        stalls=stalls,
    )


def full(disk: Disk) -> bool:
    """At its `maxmemory` under `noeviction`: the server refuses writes (`OOM`)."""
    return bool(
        disk.max_bytes and (disk.used_bytes or 0) >= disk.max_bytes and disk.policy == "noeviction"
    )


def stalls_of(latest: list[list[Any]]) -> list[Stall]:
    """LATENCY LATEST's rows (event, at, latest ms, worst ms), newest first."""
    found = (Stall(as_text(e[0]), int(e[1]), int(e[2]), int(e[3])) for e in latest)
    return sorted(found, key=lambda s: s.at, reverse=True)


def describe(disk: Disk, now: float) -> list[str]:
    """Lines for a person: the AOF and its rewrite, a failed write first, the stalls."""
    head = f"server {disk.server}: "
    if disk.problem:
        return [head + f"its disk could not be read ({disk.problem})"]
    lines = []
    if full(disk):
        lines.append(
            head + f"FULL: {_mb(disk.used_bytes or 0)} in use of its maxmemory "
            f"{_mb(disk.max_bytes or 0)} (noeviction): it refuses writes until ops make room"
        )
    if disk.last_write == "err":
        lines.append(
            head + "THE LAST AOF WRITE FAILED: the server refuses writes until the disk "
            "takes them (full or failing; its log says which)"
        )
    if not disk.aof:
        lines.append(head + "no AOF (appendonly no): what it holds is lost when it stops")
    else:
        aof, base = disk.aof_bytes or 0, disk.rewritten_bytes or 0
        grown = (
            f", {aof / base:.1f}x what the last rewrite left ({_mb(base)})"
            if base >= GROWTH_FROM
            else ""
        )
        doing = "; a rewrite runs now (its child takes a core and the disk)"
        doing = doing if disk.rewriting else ""
        failed = "; the last rewrite failed" if disk.last_rewrite == "err" else ""
        lines.append(head + f"AOF {_mb(aof)}{grown}{doing}{failed}")
    if disk.max_bytes and not full(disk):
        share = (disk.used_bytes or 0) / disk.max_bytes
        lines.append(
            f"  memory {_mb(disk.used_bytes or 0)} of its maxmemory {_mb(disk.max_bytes)} "
            f"({share:.0%}, {disk.policy or 'policy unknown'})"
        )
    if not disk.stalls:
        lines.append(
            f"  no stall logged (the latency monitor logs events of "
            f"`latency-monitor-threshold` ms or more; dateline's servers set {STALL_MS})"
        )
    for stall in disk.stalls:
        lines.append(
            f"  stall: {stall.event} {stall.latest_ms} ms, {_ago(now - stall.at)} "
            f"(worst {stall.worst_ms} ms)"
        )
    return lines


def _mb(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"
