"""Sealed records: what in the log the append function wrote, and what someone else did.

A script runs with its caller's rights, so the user that appends (`ingest`) holds
`XADD` and `RPUSH` on the log's keys and could write entries around the append script:
no dedup, no version count. Redis has no "this command only inside that function". So
the append becomes a server function whose code holds a key that its callers cannot
read (they are granted `FCALL`, not `FUNCTION LIST` or `DUMP`), and it seals each record
it writes: an HMAC-SHA1 of the record (its version, position and recorded time
included) as a last member, `"seal"`. Every reader of the log opens records here: a
sealed record comes back without its seal, as it was before sealing; one whose seal
does not match, or an unsealed one where the log is sealed, is refused (`Unsealed`),
and the projector parks it with that reason. A raw `XADD` still lands; nobody reads it
as an update.

Where a partition is sealed from is its marker, `<prefix>:{pN}:seal` (a hash): `from`,
the last stream id before sealing, and `lists`, set once the records of its stories'
lists up to there are sealed too (`seal_log`). Stream entries at or before `from` stay
as they were (a stream entry cannot be rewritten; a raw `XADD` can only land after the
last id). The marker is written by whoever holds the key (the projector, `dateline log
seal`), in a key the `ingest` user may read but not write. The plain append script
refuses a sealed partition with `SEALED <function>`, so no process, old or new, appends
an unsealed record after its marker; the client then calls the function.

HMAC-SHA1 because `redis.sha1hex` is the one hash a script has; as an HMAC it is sound.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from dateline.domain.positions import stream_id
from dateline.store import scripts
from dateline.store.connection import sent_by_slot, sent_whole
from dateline.store.functions import no_functions
from dateline.store.layout import Keys

logger = structlog.get_logger("dateline.store")
KEY_BYTES = 32
SEAL_KEY_FILE = "seal.key"
_OPENING = b',"seal":"'
_SUFFIX = len(_OPENING) + 40 + 2  # the opening, 40 hex digits, '"}'
REFRESH_S = 1.0
"""While a partition is not known to be sealed, how often a reader looks again."""
# The Lua expression that joins a record in `append.lua`'s `finish`, its last string
# left open: the plain script closes it with the record's brace, the sealing one
# without, and adds the seal.
_RECORD = (
    'body .. \',"version":\' .. version .. \',"position":"\' .. position .. '
    '\'","recordedtime":"\' .. time .. \'"'
)
_PLAIN = "\n".join(
    [
        "local function finish(body, version, position, time)",
        f"  return {_RECORD}}}'",
        "end",
    ]
)
_UNSEALED_ONLY = ("-- unsealed only: begin", "-- unsealed only: end")


class Unsealed(ValueError):
    """A record of the log that the append function did not write: refused."""


class SealKeyMissing(RuntimeError):
    """The log is sealed and this process was given no key to open it."""


def parse_key(text: str, where: str = "DATELINE_SEAL_KEY") -> bytes:
    """A seal key from its 64 hex digits; an error that names `where` otherwise."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{where}: expected {2 * KEY_BYTES} hex digits (32 random bytes)")
    return key


def key_of(data_dir: Path) -> bytes:
    """The embedded server's seal key: made once into `seal.key` (0600), beside its
    password, and read by every process that opens records."""
    path = data_dir / SEAL_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(KEY_BYTES) + "\n")
    return parse_key(path.read_text(), str(path))


def mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha1).hexdigest().encode()


def seal(key: bytes, record: bytes) -> bytes:
    """`record` sealed as the append function seals it."""
    body = record[:-1]
    return body + _OPENING + mac(key, body) + b'"}'


def opened(key: bytes, raw: bytes) -> bytes | None:
    """The record without its seal; None if it has none. Raises `Unsealed` on a seal
    that does not match."""
    if raw[-_SUFFIX : -_SUFFIX + len(_OPENING)] != _OPENING or raw[-2:] != b'"}':
        return None
    body = raw[:-_SUFFIX]
    if not hmac.compare_digest(raw[-42:-2], mac(key, body)):
        raise Unsealed("its seal does not match: the record was changed or forged")
    return body + b"}"


def _lua_string(data: bytes) -> str:
    return "'" + "".join(f"\\{b}" for b in data) + "'"


FLAT_FUNCTION = "dateline_append_flat_"
"""How the append functions of releases since 2026-12-04 are named, a digest after it."""


def append_library(key: bytes) -> scripts.Library:
    """The append script as a server function that seals each record with `key`.

    Its library is named for a digest of its code, key included (as
    `scripts.library`), so a new release or key loads beside the old one.
    """
    padded = key.ljust(64, b"\0")
    body = scripts.load("append")
    begin, end = (body.index(mark) for mark in _UNSEALED_ONLY)
    body = body[:begin] + body[end + len(_UNSEALED_ONLY[1]) :]
    sealing = "\n".join(
        [
            "local function finish(body, version, position, time)",
            f"  local record = {_RECORD}'",
            "  local inner = string.gsub(redis.sha1hex(IPAD .. record), '..', BYTES)",
            "  return record .. ',\"seal\":\"' .. redis.sha1hex(OPAD .. inner) .. '\"}'",
            "end",
        ]
    )
    if _PLAIN not in body:
        raise RuntimeError("append.lua: the line that closes a record moved")
    body = body.replace(_PLAIN, sealing)
    prelude = [
        f"local IPAD = {_lua_string(bytes(b ^ 0x36 for b in padded))}",
        f"local OPAD = {_lua_string(bytes(b ^ 0x5C for b in padded))}",
        # A literal: the standard libraries are not there while a library loads.
        "local BYTES = {" + ",".join(f"['{b:02x}']='\\{b}'" for b in range(256)) + "}",
    ]
    tag = hashlib.sha256(("\n".join(prelude) + body).encode()).hexdigest()[:12]
    # `flat`: its callers send the batch's columns flat (`append.lua`'s ARGV[2]); a
    # function named without it is an older release's, sent a table an update.
    name = f"{FLAT_FUNCTION}{tag}"
    code = "\n".join(
        [
            f"#!lua name=dateline_seal_{tag}",
            *prelude,
            "redis.register_function{",
            f"  function_name = '{name}',",
            "  callback = function(KEYS, ARGV)",
            body.rstrip("\n"),
            "  end}",
        ]
    )
    return scripts.Library(f"dateline_seal_{tag}", code + "\n", {"append": name})


@dataclass
class Marker:
    """Where a partition is sealed from."""

    after: tuple[int, int]
    """Stream entries after this id must be sealed."""
    lists: bool
    """Every record in its stories' lists must be sealed."""


@dataclass
class Sealing:
    """Opens the records a process reads from the log, with its key and the markers.

    No key and no marker: the log is not sealed, and records pass as they are (a log
    from before sealing, a server without functions). Call `refresh` before reading: it
    reads the markers, again at most every `REFRESH_S` while a partition has none.
    """

    key: bytes | None
    keys: Keys
    skip: bool = False
    """Leave refused records out of what `listed_all` returns (logged), rather than
    raise: for readers that show what there is (the query service)."""
    markers: dict[int, Marker] = field(default_factory=dict)
    _looked: float = -REFRESH_S

    @property
    def complete(self) -> bool:
        return len(self.markers) == self.keys.partitions and all(
            m.lists for m in self.markers.values()
        )

    async def refresh(self, client: aioredis.Redis, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.complete or (not force and now - self._looked < REFRESH_S):
            return
        self._looked = now
        pipe = client.pipeline(transaction=False)
        for p in range(self.keys.partitions):
            pipe.hmget(self.keys.seal(p), ["from", "lists"])
        for p, (after, lists) in enumerate(await pipe.execute()):
            if after is not None:
                self.markers[p] = Marker(stream_id(after.decode()), lists is not None)
        if self.markers and self.key is None:
            raise SealKeyMissing(
                "the log is sealed (its records carry an HMAC of the append function) and "
                "this process has no key to check them: set DATELINE_SEAL_KEY to the "
                "deployment's seal key (the embedded server's is DATELINE_DATA_DIR/seal.key)"
            )

    def entry(self, partition: int, entry_id: str, raw: bytes) -> bytes:
        """A partition stream entry's record, opened; `Unsealed` if refused."""
        marker = self.markers.get(partition)
        if marker is not None and stream_id(entry_id) <= marker.after:
            return self._open(raw, False)
        return self._open(raw, marker is not None)

    def listed(self, partition: int, raw: bytes) -> bytes:
        """A record of a story's list, opened; `Unsealed` if refused."""
        marker = self.markers.get(partition)
        return self._open(raw, marker is not None and marker.lists)

    def listed_all(self, partition: int, records: list[bytes]) -> list[bytes]:
        if self.key is None:  # no key, no seal to take off (`refresh` refuses a sealed log)
            return records
        if not self.skip:
            return [self.listed(partition, r) for r in records]
        kept = []
        for record in records:
            try:
                kept.append(self.listed(partition, record))
            except Unsealed as exc:
                logger.warning("log record refused", partition=partition, error=str(exc))
        return kept

    def entry_or_none(self, partition: int, entry_id: str, raw: bytes) -> bytes | None:
        """`entry`, or None (logged) for a refused one."""
        try:
            return self.entry(partition, entry_id, raw)
        except Unsealed as exc:
            logger.warning("log entry refused", position=f"{partition}:{entry_id}", error=str(exc))
            return None

    def _open(self, raw: bytes, required: bool) -> bytes:
        if self.key is None:
            return raw  # `refresh` refuses a sealed log to a process without a key
        found = opened(self.key, raw)
        if found is not None:
            return found
        if required:
            raise Unsealed(
                "it carries no seal: it was not written by the append function (a raw "
                "XADD or RPUSH to the log's keys)"
            )
        return raw


def unsealed_log(keys: Keys) -> Sealing:
    """A `Sealing` for a process that reads no sealed log (tests, tools)."""
    return Sealing(None, keys)


class _Place(msgspec.Struct):
    subject: str
    version: int


_place = msgspec.json.Decoder(_Place).decode


def record_place(raw: bytes) -> tuple[str, int] | None:
    """A stored record's story and version; None for an entry that is no record."""
    try:
        place = _place(raw)
    except ValueError:  # msgspec's DecodeError and ValidationError
        return None
    return place.subject, place.version


@dataclass(frozen=True, slots=True)
class SealReport:
    partitions: int
    """Partitions marked now (the others were sealed already)."""
    records: int
    """Records of the stories' lists sealed in place (from before sealing)."""
    mismatched: list[str]
    """Positions whose list record differs from the stream's: left unsealed, refused."""
    function: str


_MARK = """
-- KEYS[1] the partition's seal marker, KEYS[2] its stream. ARGV[1] the append function.
-- Marks the partition sealed after its last id (once), names the function; returns the
-- marker's `from` and whether its lists are sealed.
local from = redis.call('HGET', KEYS[1], 'from')
if not from then
  from = '0-0'
  if redis.call('EXISTS', KEYS[2]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[2])
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then from = info[i + 1] end
    end
  end
  redis.call('HSET', KEYS[1], 'from', from)
end
redis.call('HSET', KEYS[1], 'function', ARGV[1])
return {from, redis.call('HGET', KEYS[1], 'lists') or false}
"""


async def load_append(client: aioredis.Redis, key: bytes) -> str:
    """Load the sealing append function (once); its name."""
    library = append_library(key)
    try:
        await client.function_load(library.code)
    except ResponseError as e:
        if "already exists" not in str(e):
            raise
    return library.functions["append"]


async def seal_at_start(
    client: aioredis.Redis, keys: Keys, key: bytes | None
) -> Literal["no key", "no functions", "sealed", "not sealed"]:
    """What a projector does when it starts: a log that is sealed or empty is sealed
    (its function loaded, a new release's named); one with records from before sealing
    is left for `dateline seal`, which the operator runs once ingest and the
    validator run this release (older ones append with the plain script, unsealed)."""
    if key is None:
        return "no key"
    try:
        await load_append(client, key)
    except ResponseError as e:
        if no_functions(e):
            return "no functions"
        raise
    if not (await is_sealed(client, keys) or await is_empty(client, keys)):
        return "not sealed"
    await seal_log(client, keys, key)
    return "sealed"


async def seal_if_supported(
    client: aioredis.Redis,
    keys: Keys,
    key: bytes,
    *,
    progress: Callable[[int], None] | None = None,
) -> SealReport | None:
    """`seal_log`, or None on a server without functions (Redis 6.2)."""
    try:
        return await seal_log(client, keys, key, progress=progress)
    except ResponseError as e:
        if no_functions(e):
            return None
        raise


async def sealing_key(client: aioredis.Redis, key: bytes | None) -> bytes | None:
    """`key`, once the sealing append function is loaded on `client`; None without a
    key, or on a server without functions (Redis 6.2). What a copy of a log (`restore`,
    `migrate`) writes its stories' lists sealed with, asked before it writes them."""
    if key is None:
        return None
    try:
        await load_append(client, key)
    except ResponseError as e:
        if no_functions(e):
            return None
        raise
    return key


async def is_sealed(client: aioredis.Redis, keys: Keys) -> bool:
    # `from`, not the key: a marker may hold only a move (`dateline migrate`). HGET, not
    # HEXISTS: the services' users have the one (deploy/users.acl).
    pipe = client.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.hget(keys.seal(p), "from")
    return any(found is not None for found in await pipe.execute())


async def is_empty(client: aioredis.Redis, keys: Keys) -> bool:
    return not await client.exists(*keys.logs())


async def seal_log(
    client: aioredis.Redis,
    keys: Keys,
    key: bytes,
    *,
    progress: Callable[[int], None] | None = None,
    page: int = 1000,
    listed: bool = False,
) -> SealReport:
    """Seal the log from now on: load the function, mark each partition, then seal the
    records its stories' lists hold from before (each checked against its stream entry;
    `progress` is told how many stream entries each page covered). Run again, it names a
    new release's function and finishes what an interrupted run left.

    `listed`: the lists' records were written sealed (a copy, `migrate.write_log` given
    the key, and checked sealed by `migrate.check`): the partitions are marked so, and
    the lists not read again."""
    function = await load_append(client, key)
    mark = scripts.Script(client, _MARK)
    marked, sealed, mismatched = 0, 0, list[str]()
    for p in range(keys.partitions):
        had = await client.hget(keys.seal(p), "from") is not None
        after, lists = cast(
            list[Any], await mark(keys=[keys.seal(p), keys.log(p)], args=[function])
        )
        marked += 0 if had else 1
        if lists:
            continue
        if listed:
            await client.hset(keys.seal(p), "lists", "1")
            continue
        start = "-"
        last = after.decode()
        while True:
            rows = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                await client.xrange(keys.log(p), min=start, max=last, count=page),
            )
            if not rows:
                break
            done, bad = await _seal_lists(client, keys, key, p, rows)
            sealed, mismatched = sealed + done, mismatched + bad
            if progress is not None:
                progress(len(rows))
            start = "(" + rows[-1][0].decode()
        await client.hset(keys.seal(p), "lists", "1")
    return SealReport(marked, sealed, mismatched, function)


async def _seal_lists(
    client: aioredis.Redis,
    keys: Keys,
    key: bytes,
    partition: int,
    rows: list[tuple[bytes, dict[bytes, bytes]]],
) -> tuple[int, list[str]]:
    places: list[tuple[str, bytes, str, int]] = []
    for entry_id, fields in rows:
        raw = fields.get(b"__data__", b"")
        place = record_place(raw)
        if place is not None and not _sealed(key, raw):
            story, version = place
            places.append((entry_id.decode(), raw, keys.story(story, partition), version - 1))
    if not places:
        return 0, []
    # As commands, not a pipeline object (its reply callbacks and timers were most of a
    # page's time), the writes in one transaction: one fsync a page under `always`.
    reads = [("LINDEX", list_key, index) for _, _, list_key, index in places]
    found = await sent_by_slot(client, reads)
    writes: list[tuple[str | int | bytes, ...]] = []
    bad = []
    for (eid, raw, list_key, index), listed in zip(places, found, strict=True):
        if listed == raw:
            writes.append(("LSET", list_key, index, seal(key, raw)))
        elif listed is None or not _sealed(key, listed):
            bad.append(f"{partition}:{eid}")
    if writes:
        await sent_whole(client, writes)
    return len(writes), bad


def _sealed(key: bytes, raw: bytes) -> bool:
    try:
        return opened(key, raw) is not None
    except Unsealed:
        return False
