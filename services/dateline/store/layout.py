"""Where everything lives in Redis: the one module that spells a key.

Every key of a story carries the hash tag of the story's partition, `{pN}`, and so
does that partition's stream: one append script touches a single cluster slot.

The log (`Keys`)
    <prefix>:config                 hash: partitions (fixed once the log exists), and `tags`:
                                    "slots" for a log made on a cluster, whose partition
                                    N's tag is `slot_tags` N (`{p3.1234}`), not `{p3}`
    <prefix>:{pN}:log               stream: partition N of the log, never trimmed
    <prefix>:{pN}:ids               hash: "<len>:<source><id>" -> "version position story"
    <prefix>:{pN}:story:<story>     list: the story's records; index i holds version i+1
    <prefix>:{pN}:seal              hash: partition N's marker, which the append script
                                    reads: from when its records are sealed (`from`,
                                    `lists`, `function`; `store/seal.py`; none: the log
                                    is not sealed), and whether the log is being moved or
                                    has moved to another server (`moving`, `moving_to`;
                                    `dateline migrate`): then appends are refused

Feeds
    <prefix>:feeds                  hash: feed name -> its credentials (JSON)
    <prefix>:feeds:tokens           hash: SHA-256 of a token -> feed name
    <prefix>:inbox:<feed>           stream: a feed's inbox, for the validator
    <prefix>:rejected               stream: inbox entries the validator refused

Consumer groups (`GroupKeys`; one group per projection version, and the validator's)
    <prefix>:<group>:lease:<name>   string: the process that holds a partition (or inbox)
    <prefix>:<group>:members        zset: live processes, by when their heartbeat runs out
    <prefix>:<group>:attempts       hash: "<partition>:<entry id>" -> failures so far
    <prefix>:<group>:parked         hash: story -> the entry that parked it
    <prefix>:<group>:dlq            stream: one entry per parked update

Subscriptions (`SubscriptionKeys`; the delivery service, `dateline deliver`)
    <prefix>:subs                   hash: subscription name -> its settings (JSON)
    <prefix>:subs:secrets           hash: subscription name -> its signing secret
    <prefix>:sub:<name>:outbox      stream: updates waiting for this subscriber
    <prefix>:sub:<name>:retries     hash: outbox entry -> its retry state (JSON)
    <prefix>:sub:<name>:dlq         stream: updates given up on, with the last error
    <prefix>:sub:<name>:parked      set: stories whose later updates wait behind the dlq
    <prefix>:sub:<name>:stats       hash: counters and the last outcome, for the ops page
    <prefix>:sub:<name>:marks       hash: partition -> the last log entry fanned out to it
    <prefix>:sub:<name>:removed     string: a removed subscription's `created`, for a day
    On a cluster `<name>` is a hash tag, `{<name>}`: a subscription's keys share a slot,
    so each step of its delivery is one transaction there too.
    The fan-out from the log is consumer group `deliver` (`GroupKeys` above).

Read models (`ModelKeys`, per projection version; `store/readmodels.py` says what each holds)
    <prefix>:rm:active              the version dashboards read ("v1", ...)
    <prefix>:rm:replay              hash: a rebuild's progress, for the operations page
    <prefix>:rm:changes             pub/sub channel: a partition's read models moved on (one
                                    server; `<partition>:<checkpoint>[ <story> ...]`), a
                                    version switched, a reader was revoked
    <prefix>:rm:changes:{pN}        sharded channel (on a cluster): partition N's moved on
    <prefix>:rm:<v>:shape           the read models' shape this version was built with
    and per partition (`Region`; from shape 5, so that a commit is one slot on a cluster):
    <prefix>:rm:<v>:{pN}:checkpoint hash: N -> partition N's last settled stream id
    <prefix>:rm:<v>:{pN}:story:<id>, :statements:<id>, :merge:<id>, :timeline:<id>
    <prefix>:rm:<v>:{pN}:index, :index:by_time, :index:<status>:by_time
    <prefix>:rm:<v>:{pN}:speaker:<folded name>, :schedule, :schedule:by_start, :schedule:due
    A version built before shape 5 has each of these once, without the `{pN}`: readers
    read every region and merge, whichever the layout (one region, or one a partition).
"""

from __future__ import annotations

import binascii
import functools
import itertools
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from dateline.domain.order import fold_text


def partition_of(story: str, partitions: int) -> int:
    """CRC-32 (IEEE, as zlib and every language's stdlib computes it) of the UTF-8 id, mod P."""
    return zlib.crc32(story.encode()) % partitions


def dedup_field(source: str, update_id: str) -> str:
    """Length-prefixed so that no (source, id) pair can spell another's field."""
    return f"{len(source)}:{source}{update_id}"


def hash_tag(partition: int) -> str:
    """`{pN}`: every key of partition N lands in one cluster slot (a log made on one server)."""
    return f"{{p{partition}}}"


SLOTS = 16384


def slot_of(tag: str) -> int:
    """The cluster slot of a hash tag's text: CRC-16/XMODEM mod 16384, as the servers do."""
    return binascii.crc_hqx(tag.encode(), 0) % SLOTS


@functools.cache
def slot_tags(partitions: int) -> tuple[str, ...]:
    """`{p<N>.<n>}` for each partition N of a log made on a cluster: n the least that puts
    the tag in the slot at the middle of N's share of the slots. A cluster's masters hold
    even ranges of slots, so P partitions spread as evenly as P allows over any number of
    masters, and evenly over every count that divides P (48: 1, 2, 3, 4, 6, 8, 12, 16, 24,
    48 masters). Plain `{pN}` put 8 partitions 2/2/4 on 3 masters. (About 0.2 s for 48,
    once a process; ACL patterns `{p*}` match both forms.)"""
    tags = []
    for n in range(partitions):
        middle = (2 * n + 1) * SLOTS // (2 * partitions)
        suffix = next(i for i in itertools.count() if slot_of(f"p{n}.{i}") == middle)
        tags.append(f"{{p{n}.{suffix}}}")
    return tuple(tags)


def partition_stream(prefix: str, tag: str) -> str:
    """A partition of the log, by its hash tag (`Keys.log` for partition N)."""
    return f"{prefix}:{tag}:log"


def group_of(version: str) -> str:
    """The consumer group of a projection version: `projector-v3`."""
    return f"projector-{version}"


def is_projection_group(group: str) -> bool:
    """Whether `group` is a projection version's (`group_of`), not a kit app's."""
    return re.fullmatch(re.escape(group_of("v")) + r"\d+", group) is not None


@dataclass(frozen=True, slots=True)
class GroupKeys:
    """The keys of one consumer group: leases, members, retries, dead letters."""

    prefix: str
    group: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{self.group}"

    def lease(self, name: str) -> str:
        """The lease of a partition (`pN`) or of an inbox (its stream's key)."""
        return f"{self.base}:lease:{name}"

    def partition_lease(self, partition: int) -> str:
        return self.lease(f"p{partition}")

    @property
    def members(self) -> str:
        return f"{self.base}:members"

    @property
    def attempts(self) -> str:
        return f"{self.base}:attempts"

    @property
    def parked(self) -> str:
        return f"{self.base}:parked"

    @property
    def dlq(self) -> str:
        return f"{self.base}:dlq"

    @property
    def redrive(self) -> str:
        """The stories ops asked the group's consumer to redrive, and how that went."""
        return f"{self.base}:redrive"

    @property
    def all(self) -> str:
        """A SCAN pattern for every key of the group (`dateline replay` drops an old one)."""
        return f"{self.base}:*"


@dataclass(frozen=True, slots=True)
class Region:
    """The cross-story keys of a part of a version's read models: of one partition (from
    shape 5: `{pN}` in each key, the slot of the partition's stream), or of them all."""

    base: str

    def story(self, story: str) -> str:
        return f"{self.base}:story:{story}"

    def timeline(self, story: str) -> str:
        return f"{self.base}:timeline:{story}"

    def statements(self, story: str) -> str:
        return f"{self.base}:statements:{story}"

    def merge_keys(self, story: str) -> str:
        return f"{self.base}:merge:{story}"

    @property
    def index(self) -> str:
        return f"{self.base}:index"

    @property
    def index_by_time(self) -> str:
        return f"{self.base}:index:by_time"

    def index_by_status(self, status: str) -> str:
        """The stories of one status by last recorded time: `?status=` reads only these."""
        return f"{self.base}:index:{status}:by_time"

    def speaker(self, name: str) -> str:
        return f"{self.base}:speaker:{fold_text(name)}"

    def speaker_by_time(self, name: str) -> str:
        """A speaker's statements by time (shape 6): a page of them is read by it. Not
        `speaker:<name>:...`, which another speaker's name could spell."""
        return f"{self.base}:speaker-at:{fold_text(name)}"

    def by_time_of_speaker(self, key: str) -> str:
        """`speaker_by_time` of the speaker whose hash is `key` (`speaker`)."""
        return f"{self.base}:speaker-at:{key[len(self.base) + len(':speaker:') :]}"

    @property
    def schedule(self) -> str:
        return f"{self.base}:schedule"

    @property
    def schedule_by_start(self) -> str:
        return f"{self.base}:schedule:by_start"

    @property
    def schedule_due(self) -> str:
        """The items still to happen, by when they fall due (`domain.overdue.due_at`)."""
        return f"{self.base}:schedule:due"

    @property
    def checkpoint(self) -> str:
        """Hash: partition -> the last settled stream id (of this region's partitions)."""
        return f"{self.base}:checkpoint"


class ModelKeys:
    """The keys of one projection version's read models (`ReadModels` writes them).

    `log`: the log's keys, for read models laid out per partition (from shape 5), under
    each partition's hash tag; None for a version built before, whose cross-story keys
    are one for all.
    """

    def __init__(self, prefix: str, version: str, log: Keys | None = None) -> None:
        self.prefix, self.version = prefix, version
        self.partitions = None if log is None else log.partitions
        self.base = f"{prefix}:rm:{version}"
        if log is None:
            self.regions = [Region(self.base)]
        else:
            self.regions = [Region(f"{self.base}:{log.tag(p)}") for p in range(log.partitions)]
        """Every region once: one for all partitions, or one a partition."""

    def region(self, partition: int) -> Region:
        """Where partition N's cross-story entries and checkpoint live."""
        return self.regions[0] if self.partitions is None else self.regions[partition]

    def region_of(self, story: str) -> Region:
        if self.partitions is None:
            return self.regions[0]
        return self.regions[partition_of(story, self.partitions)]

    @property
    def all(self) -> str:
        """A SCAN pattern for every key of this version."""
        return f"{self.base}:*"

    def story(self, story: str) -> str:
        return self.region_of(story).story(story)

    def timeline(self, story: str) -> str:
        return self.region_of(story).timeline(story)

    def statements(self, story: str) -> str:
        return self.region_of(story).statements(story)

    def merge_keys(self, story: str) -> str:
        return self.region_of(story).merge_keys(story)

    @property
    def shape(self) -> str:
        """The `SHAPE` this version was built with; none written: 1."""
        return f"{self.base}:shape"

    @property
    def group(self) -> str:
        """The consumer group that projects into this version (and its dead letters)."""
        return group_of(self.version)

    @property
    def changes(self) -> str:
        return changes_channel(self.prefix)


def changes_channel(prefix: str) -> str:
    return f"{prefix}:rm:changes"


def active_key(prefix: str) -> str:
    return f"{prefix}:rm:active"


def backup_key(prefix: str) -> str:
    """The last backup taken (`dateline backup`): when, how much, where (JSON)."""
    return f"{prefix}:backup"


def read_models_pattern(prefix: str) -> str:
    """A SCAN pattern for every key of the read models under `prefix`: each version's,
    the active version's name, a rebuild's progress."""
    return f"{prefix}:rm:*"


def replay_key(prefix: str) -> str:
    return f"{prefix}:rm:replay"


def checkpoints_pattern(prefix: str) -> str:
    """A SCAN pattern for the checkpoint of every projection version."""
    return f"{prefix}:rm:*:checkpoint"


def version_of_checkpoint(prefix: str, key: str) -> str:
    """The version in a key `checkpoints_pattern` found (one for all partitions, or a
    partition's: `<prefix>:rm:v1:{p3}:checkpoint`)."""
    return key.removeprefix(f"{prefix}:rm:").split(":", 1)[0]


def feeds_key(prefix: str) -> str:
    return f"{prefix}:feeds"


def feed_tokens_key(prefix: str) -> str:
    return f"{prefix}:feeds:tokens"


def readers_key(prefix: str) -> str:
    return f"{prefix}:readers"


def reader_tokens_key(prefix: str) -> str:
    return f"{prefix}:readers:tokens"


def reader_sessions_key(prefix: str, reader: str) -> str:
    return f"{prefix}:readers:sessions:{reader}"


def session_key(prefix: str, hashed: str) -> str:
    return f"{prefix}:session:{hashed}"


def signin_key(prefix: str, hashed: str) -> str:
    return f"{prefix}:signin:{hashed}"


_INBOX = ":inbox:"


def inbox_key(prefix: str, feed: str) -> str:
    return f"{prefix}{_INBOX}{feed}"


def feed_of_inbox(key: str) -> str:
    """The feed whose inbox `key` is."""
    return key.rsplit(_INBOX, 1)[1]


def rejected_key(prefix: str) -> str:
    return f"{prefix}:rejected"


DELIVER_GROUP = "deliver"
"""The consumer group that fans the log out to the subscriptions' outboxes."""


def subscriptions_key(prefix: str) -> str:
    return f"{prefix}:subs"


def deliveries_held_key(prefix: str) -> str:
    """Where the delivery service says it holds every send for a move (the target's
    address), no send under way: what `dateline migrate` waits for before it reads
    what the subscriptions are owed. It lives a few seconds, renewed while it holds."""
    return f"{prefix}:deliver:held"


def subscription_secrets_key(prefix: str) -> str:
    """Apart from the settings: the status and the ops page read those, never this."""
    return f"{prefix}:subs:secrets"


@dataclass(frozen=True, slots=True)
class SubscriptionKeys:
    """The keys of one subscription's delivery state."""

    prefix: str
    name: str
    tagged: bool = False
    """On a cluster: the name is the keys' hash tag, so they share a slot."""

    @property
    def base(self) -> str:
        name = f"{{{self.name}}}" if self.tagged else self.name
        return f"{self.prefix}:sub:{name}"

    @property
    def outbox(self) -> str:
        return f"{self.base}:outbox"

    @property
    def retries(self) -> str:
        return f"{self.base}:retries"

    @property
    def dlq(self) -> str:
        return f"{self.base}:dlq"

    @property
    def parked(self) -> str:
        return f"{self.base}:parked"

    @property
    def stats(self) -> str:
        return f"{self.base}:stats"

    @property
    def marks(self) -> str:
        """Partition -> the last log entry fanned out here: an entry at or before it is
        in the outbox already (or was delivered), and is not added twice."""
        return f"{self.base}:marks"

    @property
    def held(self) -> str:
        """Positions of updates the fan-out's group parked before they reached this
        outbox: a redrive adds each of them here once (`store/scripts/hold.lua`)."""
        return f"{self.base}:held"

    @property
    def removed(self) -> str:
        """The tombstone `remove` leaves: a fan-out that read the registry before the
        removal adds nothing for a subscription whose `created` it holds."""
        return f"{self.base}:removed"

    def all(self) -> list[str]:
        """Its delivery state (not the tombstone)."""
        return [
            self.outbox,
            self.retries,
            self.dlq,
            self.parked,
            self.stats,
            self.marks,
            self.held,
        ]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str
    partitions: int
    slotted: bool = False
    """The log's partitions are tagged `slot_tags` (a log made on a cluster: the config's
    `tags` says so), else `{pN}`."""

    @property
    def config(self) -> str:
        return f"{self.prefix}:config"

    def tag(self, partition: int) -> str:
        """Partition N's hash tag: its keys' slot on a cluster."""
        return slot_tags(self.partitions)[partition] if self.slotted else hash_tag(partition)

    def partition(self, story: str) -> int:
        return partition_of(story, self.partitions)

    def changes(self, partition: int) -> str:
        """Partition N's sharded doorbell channel, in its stream's slot (on a cluster,
        where a plain PUBLISH would go to every node)."""
        return f"{changes_channel(self.prefix)}:{self.tag(partition)}"

    def log(self, partition: int) -> str:
        return partition_stream(self.prefix, self.tag(partition))

    def ids(self, partition: int) -> str:
        return f"{self.prefix}:{self.tag(partition)}:ids"

    def seal(self, partition: int) -> str:
        return f"{self.prefix}:{self.tag(partition)}:seal"

    def story(self, story: str, partition: int | None = None) -> str:
        """The story's history list; pass `partition` when it is known already."""
        part = self.partition(story) if partition is None else partition
        return f"{self.prefix}:{self.tag(part)}:story:{story}"

    @property
    def stories_match(self) -> str:
        """A `SCAN` pattern for every partition's story histories at once (`{pN}` and
        `{pN.n}` alike). It may match other keys: `stories_in` keeps the histories."""
        return f"{self.prefix}:{{p*}}:story:*"

    def stories_in(self, found: Iterable[str]) -> list[str]:
        """The stories whose histories these keys are, in their order: a key that
        `stories_match` found but no partition of this log holds is left out."""
        heads = {self.story("", p) for p in range(self.partitions)}
        mark, stories = ":story:", []
        for key in found:
            cut = key.find(mark) + len(mark)
            if key[:cut] in heads:
                stories.append(key[cut:])
        return stories

    def logs(self) -> list[str]:
        return [self.log(p) for p in range(self.partitions)]

    def group(self, group: str) -> GroupKeys:
        return GroupKeys(self.prefix, group)

    def models(self, version: str) -> ModelKeys:
        """A version's keys as this release lays them out (per partition); one built
        before is opened as it was built (`readmodels.open_models`)."""
        return ModelKeys(self.prefix, version, self)

    @property
    def active(self) -> str:
        return active_key(self.prefix)

    @property
    def replay(self) -> str:
        return replay_key(self.prefix)
