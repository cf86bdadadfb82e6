"""A backup of the log in a file, and the log restored from one (`dateline backup`,
`dateline restore`).

Replicas keep a log through a lost server; they copy a `FLUSHALL`, a wrong `migrate`
or a volume written over as faithfully as an update. A backup is the log as it stood,
kept somewhere else: every record as the log holds it (its version, position and
recorded time), the feeds, readers and subscriptions, and the feeds' Redis inboxes.

The file is NDJSON, gzipped when its name ends in `.gz`: a line a record, each a tagged
object (`t`), in this order:

- `header`: the format, when, from where, the prefix and partition count, each
  partition's last stream id when the backup began (`cut`: what the file holds of it),
  and whether the log is fanned out to subscribers;
- `update`: a record of the log, opened (no seal), with the partition and stream id it
  had, in stream-id order across partitions;
- `settings`: a settings hash (feeds, their tokens' digests, readers, subscriptions and
  their signing secrets), by name;
- `inbox`: an entry of a feed's Redis inbox;
- `delivery` (format 2; where the log is fanned out): a subscription's updates of the
  file not yet acknowledged by its receiver, in log order (in its outbox, parked by the
  fan-out before they reached it, or not fanned out yet), and its dead letters;
- `end`: how many lines and updates came before it, a SHA-256 of those lines, and, where
  the log has a seal key, an HMAC-SHA256 of that digest under it.

A file cut short has no `end`; a file changed after it was written fails the digest;
one written by someone without the seal key fails the signature. `restore` reads the
whole file once to check all three, and writes nothing unless they hold.

A backup does not freeze the log: it reads each partition up to its `cut`, so appends
go on, and what lands after the cut is the next backup's. Each story lives in one
partition, so each story's history in the file is whole up to some version.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal, Protocol, cast

import msgspec
import redis.asyncio as aioredis

from dateline.domain.positions import BadPosition, Position
from dateline.store import migrate, owed
from dateline.store.layout import Keys, backup_key
from dateline.store.seal import Sealing

FORMAT = 2
"""2 added the `delivery` lines; a file of format 1 (none) is read as before."""
_GZIP_MAGIC = b"\x1f\x8b"
_SIGNED = b"dateline backup 1 sha256 "
"""What the signature covers, before the digest's hex: names the format, so a MAC of
another kind of file under the same key cannot pass for one."""


class Header(msgspec.Struct, tag="header", tag_field="t", forbid_unknown_fields=True):
    format: int
    created: str
    source: str
    prefix: str
    partitions: int
    cut: dict[str, str]
    delivery: bool


class Update(msgspec.Struct, tag="update", tag_field="t", forbid_unknown_fields=True):
    p: int
    id: str
    record: msgspec.Raw


class Setting(msgspec.Struct, tag="settings", tag_field="t", forbid_unknown_fields=True):
    name: str
    fields: dict[str, str]


class Inbox(msgspec.Struct, tag="inbox", tag_field="t", forbid_unknown_fields=True):
    """An entry of a feed's inbox: what a feed wrote, unchecked until the validator reads
    it, so its fields go as bytes (base64), whatever they hold."""

    feed: str
    id: str
    fields: list[tuple[bytes, bytes]]


class End(msgspec.Struct, tag="end", tag_field="t", forbid_unknown_fields=True):
    lines: int
    updates: int
    stories: int
    sha256: str
    signature: str | None = None


class Delivery(msgspec.Struct, tag="delivery", tag_field="t", forbid_unknown_fields=True):
    """A subscription's deliveries at the backup's cut: what a restore puts back, so
    that a restored log's subscribers miss nothing it holds."""

    subscription: str
    send: list[str]
    """Positions of the file's updates it wants and its receiver had not acknowledged,
    in log order."""
    parked: list[tuple[str, str]] = []
    """Its dead letters of the file's updates: (position, `Parked` as JSON)."""


Line = Header | Update | Setting | Inbox | Delivery | End
_line = msgspec.json.Decoder(Line).decode
_encode = msgspec.json.Encoder().encode


class Out(Protocol):
    """Where a backup is written: a file, gzipped or not."""

    def write(self, data: bytes, /) -> object: ...


class Taken(msgspec.Struct):
    """The last backup, as `dateline backup` records it in the log's server (`backup_key`):
    what `dateline status`, the query's `/v1/status` and `/metrics` say of it."""

    at: float
    """When it began (Unix seconds): what it holds is the log as it stood then."""
    updates: int
    stories: int
    file: str
    bytes: int
    signed: bool


_taken = msgspec.json.Decoder(Taken).decode


async def record_taken(client: aioredis.Redis, prefix: str, taken: Taken) -> None:
    await client.set(backup_key(prefix), msgspec.json.encode(taken))


def taken_of(raw: bytes | None) -> Taken | None:
    """The last backup from its key's value; None for none (or one this release cannot
    read, which the next backup writes over)."""
    if raw is None:
        return None
    try:
        return _taken(raw)
    except msgspec.DecodeError:
        return None


class BadBackup(ValueError):
    """A file `restore` will not write from: what is wrong with it, and where."""


class BadSignature(BadBackup):
    """The file's signature does not hold under the key `restore` has, or there is none."""


def signature(key: bytes, digest: str) -> str:
    return hmac.new(key, _SIGNED + digest.encode(), hashlib.sha256).hexdigest()


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise BadBackup(f"{what} is not UTF-8: a backup holds text only") from None


def _texts(held: dict[bytes, bytes], what: str) -> dict[str, str]:
    return {_text(k, what): _text(v, f"{what}[{k!r}]") for k, v in held.items()}


@dataclass
class Written:
    """What `write` put in the file."""

    updates: int = 0
    stories: int = 0
    settings: int = 0
    inbox: int = 0
    unsent: int = 0
    """Updates of the file not yet acknowledged by a subscription's receiver, counted
    once a subscription."""
    parked: int = 0
    """The subscriptions' dead letters of the file's updates."""
    signed: bool = False
    cut: dict[int, str] = field(default_factory=dict)
    at: float = 0.0
    """When it began (Unix seconds)."""
    refused: list[str] = field(default_factory=list)
    """Positions of entries the seal refused (written around the append function): not
    updates, so not in the file."""


class _Lines:
    """Lines out, each counted and hashed."""

    def __init__(self, out: Out) -> None:
        self.out, self.count, self.digest = out, 0, hashlib.sha256()

    def put(self, line: Line) -> None:
        data = _encode(line) + b"\n"
        self.out.write(data)
        self.digest.update(data)
        self.count += 1


async def write(
    client: aioredis.Redis,
    sealing: Sealing,
    out: Out,
    *,
    source: str,
    key: bytes | None,
    progress: Callable[[int], None] | None = None,
) -> Written:
    """The log under `sealing.keys` on `client`, up to each partition's last entry now,
    into `out`; signed with `key` where there is one. `source` names the server (no
    password) in the header."""
    keys = sealing.keys
    done = Written(cut=await migrate.cut(client, keys), signed=key is not None, at=time.time())
    fanned = await migrate.fans_out(client, keys)
    # After the cut: each outbox as it stands then holds all it will of the file's updates
    # but those fanned out later, which `owed.seen` finds past the marks.
    dues = await owed.dues(client, keys, done.cut) if fanned else []
    lines = _Lines(out)
    lines.put(
        Header(
            format=FORMAT,
            created=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            source=source,
            prefix=keys.prefix,
            partitions=keys.partitions,
            cut={str(p): eid for p, eid in done.cut.items()},
            delivery=fanned,
        )
    )
    stories: set[str] = set()
    records = migrate.opened_records(client, sealing, done.cut, done.refused)
    async for ms, seq, partition, record in records:
        lines.put(Update(p=partition, id=f"{ms}-{seq}", record=msgspec.Raw(record)))
        stories.add(migrate.subject_of(record))
        owed.seen(dues, partition, (ms, seq), record)
        done.updates += 1
        if progress is not None and done.updates % migrate.PAGE == 0:
            progress(migrate.PAGE)
    if progress is not None and done.updates % migrate.PAGE:
        progress(done.updates % migrate.PAGE)
    done.stories = len(stories)
    for name, held in (await migrate.setting_hashes(client, keys.prefix)).items():
        lines.put(Setting(name=name, fields=_texts(held, f"the settings hash {name!r}")))
        done.settings += len(held)
    async for feed, rows in migrate.inbox_pages(client, keys.prefix):
        for eid, fields in rows:
            lines.put(Inbox(feed=feed, id=eid.decode(), fields=list(fields.items())))
            done.inbox += 1
    for due in dues:
        lines.put(Delivery(subscription=due.sub.name, send=due.owed(), parked=due.parked))
        done.unsent += len(due.send)
        done.parked += len(due.parked)
    digest = lines.digest.hexdigest()
    lines.put(
        End(
            lines=lines.count,
            updates=done.updates,
            stories=done.stories,
            sha256=digest,
            signature=signature(key, digest) if key is not None else None,
        )
    )
    return done


def opened(path: Path) -> IO[bytes]:
    """`path` for reading, gunzipped if it is gzip (by its first bytes, not its name)."""
    with path.open("rb") as probe:
        zipped = probe.read(2) == _GZIP_MAGIC
    return cast(IO[bytes], gzip.open(path, "rb")) if zipped else path.open("rb")


def _lines(path: Path) -> Iterator[tuple[int, bytes, Line]]:
    """(number, bytes, decoded) of each line; `BadBackup` naming the first that is not
    a backup's line."""
    try:
        with opened(path) as lines:
            for number, data in enumerate(lines, 1):
                try:
                    yield number, data, _line(data)
                except msgspec.ValidationError as exc:
                    raise BadBackup(f"line {number}: {exc}") from None
                except msgspec.DecodeError:
                    if not data.endswith(b"\n"):  # the last line, and no end to it
                        raise BadBackup(
                            f"the file ends inside line {number}: it was cut short (a "
                            "backup copied in part, or a disk that filled)"
                        ) from None
                    raise BadBackup(
                        f"line {number} is not JSON"
                        + (": is this a dateline backup?" if number == 1 else "")
                    ) from None
    except (OSError, EOFError) as exc:  # gzip's: a stream cut short, a bad CRC
        raise BadBackup(f"the file cannot be read whole: {exc}") from None


@dataclass
class Checked:
    """A file `verify` found whole: its header and closing line, and whether its signature
    was checked."""

    header: Header
    end: End
    signature: Literal["checked", "unsigned", "skipped"]
    deliveries: list[Delivery] = field(default_factory=list)
    inboxes: set[str] = field(default_factory=set)
    """The feeds whose Redis inbox entries the file holds."""


@dataclass
class _Tally:
    """What `verify` has read so far."""

    header: Header | None = None
    end: End | None = None
    updates: int = 0
    stories: set[str] = field(default_factory=set)
    deliveries: list[Delivery] = field(default_factory=list)
    inboxes: set[str] = field(default_factory=set)

    def take(self, number: int, line: Line) -> None:
        """One line, after the lines before it; `BadBackup` if it cannot come here."""
        if self.end is not None:
            raise BadBackup(f"line {number} follows the closing line (line {number - 1})")
        match line:
            case Header() if number == 1:
                if line.format > FORMAT:
                    raise BadBackup(
                        f"written by a newer dateline (format {line.format}; this one reads "
                        f"{FORMAT}): restore it with that release"
                    )
                self.header = line
            case Header():
                raise BadBackup(f"line {number}: a second header")
            case _ if self.header is None:
                raise BadBackup(
                    "line 1 is not a backup's header: is this a dateline backup "
                    "(`dateline backup` writes one)?"
                )
            case Update():
                self._update(number, line, self.header.partitions)
            case Setting() if line.name not in migrate.SETTINGS:
                raise BadBackup(f"line {number}: no settings hash is called {line.name!r}")
            case Inbox():
                _stream_id(line.id, number)
                self.inboxes.add(line.feed)
            case Delivery():
                self._delivery(number, line, self.header.partitions)
            case End():
                self.end = line

    def _delivery(self, number: int, line: Delivery, partitions: int) -> None:
        for position in (*line.send, *(x for x, _ in line.parked)):
            try:
                parsed = Position.parse(position)
            except BadPosition as exc:
                raise BadBackup(f"line {number}: {exc}") from None
            if parsed.partition >= partitions:
                raise BadBackup(f"line {number}: {position} is past a log of {partitions}")
        for _, why in line.parked:
            try:
                owed.parked_letter(why)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise BadBackup(f"line {number}: not a parked delivery: {exc}") from None
        self.deliveries.append(line)

    def _update(self, number: int, line: Update, partitions: int) -> None:
        record = bytes(line.record)
        try:
            self.stories.add(migrate.subject_of(record))
            migrate.without_position(record)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            raise BadBackup(f"line {number}: not a record of the log: {exc}") from None
        if not 0 <= line.p < partitions:
            raise BadBackup(f"line {number}: partition {line.p} of a log of {partitions}")
        _stream_id(line.id, number)
        self.updates += 1


def verify(path: Path, key: bytes | None, *, skip_signature: bool = False) -> Checked:
    """Read the whole file: a backup's lines, in order, closed by an `end` whose counts and
    digest match what came before, and whose signature holds under `key`. `BadBackup`
    (or `BadSignature`) saying what does not."""
    digest = hashlib.sha256()
    tally, count = _Tally(), 0
    for count, data, line in _lines(path):
        tally.take(count, line)
        if tally.end is None:
            digest.update(data)
    header, end = tally.header, tally.end
    if header is None:
        raise BadBackup("the file is empty: not a dateline backup")
    if end is None:
        raise BadBackup(
            f"the file ends at line {count} without its closing line: it was cut short "
            "(a backup interrupted, or a copy not finished)"
        )
    held = (count - 1, tally.updates, len(tally.stories))
    if (end.lines, end.updates, end.stories) != held:
        raise BadBackup(
            f"its closing line counts {end.lines} lines, {end.updates} updates of "
            f"{end.stories} stories; the file holds {held[0]} lines, {held[1]} updates of "
            f"{held[2]} stories"
        )
    if not hmac.compare_digest(end.sha256, digest.hexdigest()):
        raise BadBackup(
            "its lines do not match the digest on its closing line: the file was changed "
            "or damaged after it was written"
        )
    signature = _signature(end, key, skip_signature)
    return Checked(header, end, signature, tally.deliveries, tally.inboxes)


def _stream_id(eid: str, number: int) -> None:
    ms, _, seq = eid.partition("-")
    if not (ms.isdigit() and seq.isdigit()):
        raise BadBackup(f"line {number}: {eid!r} is not a stream id")


def _signature(
    end: End, key: bytes | None, skip: bool
) -> Literal["checked", "unsigned", "skipped"]:
    if end.signature is None:
        return "unsigned"
    if skip:
        return "skipped"
    if key is None:
        raise BadSignature(
            "the backup is signed, and there is no key here to check it: pass the seal key "
            "of the deployment that wrote it (--backup-key), or --skip-signature"
        )
    if not hmac.compare_digest(end.signature, signature(key, end.sha256)):
        raise BadSignature(
            "its signature does not hold under this key: the file was written under another "
            "seal key (pass that deployment's, --backup-key), or by someone without one"
        )
    return "checked"


@dataclass
class Restored:
    checks: dict[str, migrate.StoryCheck]
    settings: int = 0
    inbox: int = 0
    queued: int = 0
    """Updates put back in the subscriptions' outboxes."""
    parked: int = 0
    """Updates put back in the subscriptions' dead letters."""
    gone: list[str] = field(default_factory=list)
    """Subscriptions with a `delivery` line and no setting: removed as the backup ran."""


async def restore(
    path: Path,
    checked: Checked,
    target: aioredis.Redis,
    to: Keys,
    *,
    progress: Callable[[int], None] | None = None,
    positions: IO[str] | None = None,
    seal_key: bytes | None = None,
) -> Restored:
    """Write a file `verify` passed (`checked`) into `target` under `to` (its prefix and
    count; an empty log there, `migrate.check_empty`): the records where their stories
    land, the settings and the inboxes, and what each subscription was owed back in its
    outbox and dead letters; the fan-out started after them where the log had one.
    `seal_key`: as `migrate.write_log`'s."""
    deliveries = checked.deliveries
    restored, rest = Restored(checks={}), list[Setting | Inbox]()
    placing = owed.Placing(owed.positions(deliveries))
    restored.checks = await migrate.write_log(
        _records(path, rest),
        target,
        to,
        progress=progress,
        positions=positions,
        seal_key=seal_key,
        placed=placing.placed if placing.known else None,
    )
    inboxes: dict[str, migrate.InboxRows] = {}
    for line in rest:
        match line:
            case Setting():
                fields = {k.encode(): v.encode() for k, v in line.fields.items()}
                restored.settings += await migrate.write_settings(
                    target, to.prefix, {line.name: fields}
                )
            case Inbox():
                inboxes.setdefault(line.feed, []).append((line.id.encode(), dict(line.fields)))
                restored.inbox += 1
    for feed, rows in inboxes.items():
        for i in range(0, len(rows), migrate.PAGE):
            await migrate.write_inbox(target, to.prefix, feed, rows[i : i + migrate.PAGE])
    if missing := placing.missing():
        raise BadBackup(
            f"its delivery lines name {len(missing)} updates the file does not hold "
            f"({', '.join(missing[:5])}): the log and settings are restored, the "
            "subscriptions' outboxes are not"
        )
    for delivery in deliveries:
        put = await placing.put_back(
            target, to, delivery.subscription, delivery.send, delivery.parked
        )
        if put is None:
            restored.gone.append(delivery.subscription)
            continue
        restored.queued += put[0]
        restored.parked += put[1]
    if checked.header.delivery:
        await migrate.start_delivery_after(target, to)
    return restored


async def _records(
    path: Path, rest: list[Setting | Inbox]
) -> AsyncIterator[tuple[int, int, int, bytes]]:
    """The file's updates as `migrate.write_log` takes them; its settings and inbox lines
    (which follow them) into `rest`, so that the file is read once more, not twice."""
    for _, _, line in _lines(path):
        match line:
            case Update():
                ms, seq = line.id.split("-")
                yield int(ms), int(seq), line.p, bytes(line.record)
            case Setting() | Inbox():
                rest.append(line)
            case _:
                pass
