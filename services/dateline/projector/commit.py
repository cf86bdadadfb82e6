"""What a batch writes, and the states the projector keeps between batches.

One commit script takes a batch's read-model writes, its acknowledgements and its
checkpoints in one step (`store/scripts/commit.lua`). It is fenced: each story's
stored state must still be the one the projector read or wrote (its SHA-1, "" for
none), else nothing is written and the projector reads the story again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import msgspec

from dateline.domain.positions import stream_id
from dateline.domain.state import StoryState
from dateline.store.deadletters import Delivery
from dateline.store.pages import Page, encode_page
from dateline.store.readmodels import Command, ReadModels

# A state that has cooled is kept as bytes: a third of its size as objects.
pack = msgspec.msgpack.Encoder().encode
unpack = msgspec.msgpack.Decoder(StoryState).decode


def fence(raw: bytes | None) -> str:
    """What the commit script compares a stored state with: its SHA-1, "" for none."""
    return "" if raw is None else hashlib.sha1(raw, usedforsecurity=False).hexdigest()


KEEP_BYTES = 32 * 2**20
"""The packed states a projector keeps between batches, at most, by default
(`DATELINE_PROJECTOR_KEEP_MB`, 32)."""
KEEP_STORIES = 10_000
"""The states a projector keeps packed between batches, at most, by default (beside the
decoded ones): scaled with `DATELINE_PROJECTOR_KEEP_MB` (`kept`)."""
WARM_STORIES = 4096
"""The states a projector keeps decoded, at most, by default: those of the stories it
wrote last; scaled with `DATELINE_PROJECTOR_WARM_MB` (`kept`)."""
WARM_PARTS = 96_000
"""The timeline entries, statements, schedule items and corrections of the states kept
decoded, at most, by default (`DATELINE_PROJECTOR_WARM_MB`, 64): about 64 MB of objects
(700 bytes each, measured on the bench's mix)."""


def warm_parts(megabytes: int) -> int:
    """The parts of decoded states that `megabytes` hold, as `WARM_PARTS` counts them."""
    return WARM_PARTS * megabytes // 64


Held = StoryState | bytes
"""A kept state: decoded while its story is warm, packed once it has cooled."""


def decoded(held: Held) -> StoryState:
    """A kept state as objects, which a batch forks and never changes (`domain.fork`)."""
    return held if isinstance(held, StoryState) else unpack(held)


def parts(state: StoryState) -> int:
    """What a decoded state holds, counted as `WARM_PARTS` bounds it."""
    timeline, said, items = len(state.timeline), len(state.statements), len(state.schedule)
    return timeline + said + items + len(state.corrections) + 1


class Kept:
    """The states the projector read or wrote last with their fences, the least recently
    used dropped past `size` states or `max_bytes` of them: a batch then costs a read and
    a write rather than the four round trips of WATCH, MGET, MULTI and EXEC.

    Bounded in bytes too: states grow with their stories, and a count alone let the
    projector grow 65 to 121 MB in six minutes of the soak (10,000 stories, 500/s). The
    operator sets both tiers (`kept`: `DATELINE_PROJECTOR_WARM_MB`, `..._KEEP_MB`); a
    state dropped past them is counted (`dropped`), for the warning that names them.

    The states of the stories written last stay decoded (warm: `WARM_STORIES`,
    `WARM_PARTS`; past them, `_admits` says which), the others are packed. Decoding a
    growing story's state every batch was a third of the projector's CPU with 100 hot
    stories (py-spy), work that grew with the story rather than with the update.
    Thousands of decoded states once made the collector's passes the latency's p99 (20
    to 50 ms, every few seconds); a state now gives it one list to walk
    (`domain/state.py`: untracked structs, tuples), and a full collection over 2,000
    warm states takes about 1 ms."""

    def __init__(
        self,
        size: int,
        max_bytes: int = KEEP_BYTES,
        warm: int = WARM_STORIES,
        warm_parts: int = WARM_PARTS,
    ) -> None:
        self.size, self.max_bytes = size, max_bytes
        self.warm_size, self.warm_parts = warm, warm_parts
        self.states: OrderedDict[str, tuple[Held, str]] = OrderedDict()
        self.bytes = 0
        """Of the packed states."""
        self.warm: OrderedDict[str, tuple[int, int]] = OrderedDict()
        """The stories whose states are kept decoded: their `parts`, and when they were
        kept (in `keep` calls, `_admits`)."""
        self.parts = 0
        self.cooled: dict[str, int] = {}
        """The stories whose states are kept packed, and when they were kept."""
        self.calls = 0
        self.dropped = 0
        """States dropped past the bounds, since the process started: each is read from
        the store again when its story next comes (`projector/warmth.py`)."""

    def __len__(self) -> int:
        return len(self.states)

    def __contains__(self, story: str) -> bool:
        return story in self.states

    def get(self, story: str) -> tuple[Held, str] | None:
        found = self.states.get(story)
        if found is not None:
            self.states.move_to_end(story)  # used: the least recent go first
            if story in self.warm:
                self.warm.move_to_end(story)
        return found

    def keep(self, story: str, state: Held, sha: str) -> None:
        self.calls += 1
        last = self.cooled.get(story)
        self._drop(story)
        size = 0 if isinstance(state, bytes) else parts(state)
        if (
            not isinstance(state, bytes)
            and size <= self.warm_parts
            and (last is None or self._admits(size, last))
        ):
            self.states[story] = (state, sha)
            self.warm[story] = size, self.calls
            self.parts += size
            while len(self.warm) > self.warm_size or self.parts > self.warm_parts:
                self._cool(next(iter(self.warm)))
        else:  # a state past the warm parts alone is packed: warm, it would cool all others
            packed = state if isinstance(state, bytes) else pack(state)
            self.states[story] = (packed, sha)
            self.bytes += len(packed)
            self.cooled[story] = self.calls
        while self.states and (len(self.states) > self.size or self.bytes > self.max_bytes):
            self._drop(next(iter(self.states)))
            self.dropped += 1

    def _admits(self, size: int, last: int) -> bool:
        """Whether a story decoded again goes back warm: if there is room, or if it was
        written more lately than the warm story it would push out first. Else it goes
        back packed and the warm stay, which is what keeps some warm when more stories
        come round in turn than the tier holds: the one pushed out by plain recency is
        the next to come, and every update decoded its state again (98% of them at
        5,000 updates/s over 2,000 stories past 64 MB, `docs/speed.md`). A story new to
        this process, or hot again, still goes warm: its second update in a row does."""
        if len(self.warm) < self.warm_size and self.parts + size <= self.warm_parts:
            return True
        coolest = next(iter(self.warm.values()), None)
        return coolest is None or last > coolest[1]

    def clear(self) -> None:
        self.states.clear()
        self.warm.clear()
        self.cooled.clear()
        self.bytes = self.parts = 0

    def forget(self, stories: Sequence[str]) -> None:
        for story in stories:
            self._drop(story)

    def _cool(self, story: str) -> None:
        """Pack a warm story's state, in its place."""
        size, self.cooled[story] = self.warm.pop(story)
        self.parts -= size
        state, sha = self.states[story]
        packed = pack(state)
        self.states[story] = (packed, sha)
        self.bytes += len(packed)

    def _drop(self, story: str) -> None:
        found = self.states.pop(story, None)
        if found is None:
            return
        if isinstance(found[0], bytes):
            self.bytes -= len(found[0])
            del self.cooled[story]
        else:
            self.parts -= self.warm.pop(story)[0]


def kept(warm_mb: int = 64, keep_mb: int = 32) -> Kept:
    """The states a projector keeps, bounded by the operator's two settings, each bound
    scaled with its setting: the stories' count as well as their size. With a fixed
    count, 10,000 small stories in play (the soak) met 4,096 decoded states while 64 MB
    held more, and a warning that said to raise the megabytes changed nothing."""
    warm = max(1, WARM_STORIES * warm_mb // 64)
    packed = max(1, KEEP_STORIES * keep_mb // 32)
    return Kept(packed + warm, keep_mb * 2**20, warm, warm_parts(warm_mb))


Bell = Callable[[int], tuple[str, str]]
"""Partition N's doorbell: how the commit announces it, (`PUBLISH`, the one channel) on
one server, (`SPUBLISH`, the partition's sharded channel) on a cluster."""


Delivered = Callable[[int], str | None]
"""Partition N's last entry a read of new entries gave this process (`Runner.delivered`),
or None if it cannot say."""


def checkpoint_args(
    models: ReadModels, group: str, partition: int, stream: str, bell: Bell, delivered: str = ""
) -> tuple[str, ...]:
    """advance()'s arguments (`store/scripts/advance.lua`) for one partition; `delivered`
    "" has it ask the group how far it delivered."""
    checkpoints = models.region(partition).checkpoint
    return (checkpoints, str(partition), stream, group, *bell(partition), delivered)


NAMED = 64
"""The most stories a commit's doorbell message names in a partition (`named`)."""


def named(stories: Iterable[str], partition_of: Callable[[str], int]) -> dict[int, str]:
    """The stories a commit wrote, space-separated, by partition, for its doorbell
    messages: a query process then drops what it keeps of them alone, not of their whole
    partition (`query/cache.py`). At 1,000 updates a second over 8 partitions every
    partition commits every 8 ms or so, and what a process kept of a story rarely lived
    longer. A partition of more than `NAMED` is left out: its message names none, and
    the process drops the partition, as before."""
    by: dict[int, list[str]] = {}
    for story in stories:
        by.setdefault(partition_of(story), []).append(story)
    return {p: " ".join(some) for p, some in by.items() if len(some) <= NAMED}


def acks(
    models: ReadModels,
    group: str,
    acked: list[Delivery],
    bell: Bell,
    delivered: Delivered,
    names: dict[int, str] | None = None,
    paged: Paged | None = None,
) -> list[Command]:
    """XACK of what was applied or seen, and the checkpoint advance, per partition, which
    takes `delivered(partition)` for the group's last-delivered id if the runner knows it;
    its message names `names[partition]` (`named`) and carries the page `paged` makes
    (`page_of`), which the script drops if the checkpoint stops short of it."""
    streams: dict[int, list[Delivery]] = {}
    for d in acked:
        streams.setdefault(d.partition, []).append(d)
    out: list[Command] = []
    for partition, done in streams.items():
        stream, upto = done[0].stream, delivered(partition) or ""
        out.append(("XACK", stream, group, *[d.entry_id for d in done]))
        news = (names or {}).get(partition, "")
        advance: Command = (
            "ADVANCE",
            *checkpoint_args(models, group, partition, stream, bell, upto),
            news,
        )
        if upto and news and paged is not None and (page := paged(partition, upto, done)):
            advance = (*advance, *page)
        out.append(advance)
    return out


Tally = Callable[[int], tuple[object, int] | None]
"""Partition N's hold by this process and the entries read under it (`Runner.tally`)."""

Paged = Callable[[int, str, list[Delivery]], tuple[str, bytes] | None]
"""The page a commit carries for partition N, moving its checkpoint to `upto` with these
entries: (the checkpoint it begins after, the page), or None (`page_of`)."""


class Carry(NamedTuple):
    """Where a commit of this process left a partition's checkpoint: under which hold,
    after how many entries read under it. The next commit's page begins there. (A tuple:
    a frozen dataclass sets each field through `object.__setattr__`, a commit each.)"""

    hold: object
    reads: int
    upto: str


PAGE_ENTRIES = 64
"""The most entries a carried page holds: a commit of more (catching up) is read."""
PAGE_BYTES = 64 << 10
"""The largest page carried: every query process hears every doorbell message."""


def page_of(
    version: str,
    partition: int,
    upto: str,
    done: list[Delivery],
    since: Carry | None,
    tally: tuple[object, int] | None,
    index: dict[str, bytes],
    record: Callable[[Delivery], bytes],
) -> tuple[str, bytes] | None:
    """The page of a commit that moves `partition`'s checkpoint to `upto` with the
    entries `done` (`store/pages.py`), if they are every entry past the checkpoint the
    last commit left (`since`): the same hold on the partition since, and as many
    entries read under it since as the commit holds (an entry set aside, parked behind
    its story's, was read and is not here). `index`: the index entries the commit
    writes, one for each story (a story it does not write, its update parked or seen
    before, is read). `record`: an entry's record as readers of the log open it."""
    if since is None or tally is None or tally[0] is not since.hold:
        return None
    if not done or len(done) > PAGE_ENTRIES or tally[1] - since.reads != len(done):
        return None
    if not index.keys() >= {d.key for d in done}:
        return None
    # A commit's entries come story by story; a live one's are one or two.
    ordered = done if len(done) == 1 else sorted(done, key=lambda d: stream_id(d.entry_id))
    page = encode_page(
        Page(
            version,
            partition,
            since.upto,
            upto,
            [(d.entry_id, msgspec.Raw(record(d))) for d in ordered],
            {d.key: msgspec.Raw(index[d.key]) for d in ordered},
        )
    )
    return (since.upto, page) if len(page) <= PAGE_BYTES else None


def apart(
    models: ReadModels,
    group: str,
    acked: list[Delivery],
    bell: Bell,
    delivered: Delivered,
    failed: set[int],
    landed: dict[int, str],
    names: dict[int, str] | None = None,
    paged: Paged | None = None,
) -> tuple[list[Command], list[Command], list[Command], dict[int, str], dict[int, str]]:
    """`acks` for read models in a store apart from the log (`DATELINE_VIEWS_URL`):
    (the EXPECTs that go before the commit's writes, the CHECKPOINTs that go after them,
    the XACKs the log is owed once they land, the checkpoints written, the partitions
    whose checkpoint the log must say: {partition: stream}).

    A partition's checkpoint is how far the runner was delivered (`delivered`), for
    with no entry failed in this batch and none drained or waiting for a retry (the
    runner does not say how far then), every entry the group was delivered there is
    in this commit or applied before. `landed`: the last checkpoint of each partition
    the projector saw land there; the store must not be behind it. `paged`: the page
    a checkpoint's message carries, where its stories are named (`page_of`)."""
    streams: dict[int, list[Delivery]] = {}
    for d in acked:
        streams.setdefault(d.partition, []).append(d)
    expects: list[Command] = []
    moves: list[Command] = []
    xacks: list[Command] = []
    written: dict[int, str] = {}
    unsettled: dict[int, str] = {}
    for partition, done in streams.items():
        stream, key = done[0].stream, models.region(partition).checkpoint
        xacks.append(("XACK", stream, group, *[d.entry_id for d in done]))
        if (last := landed.get(partition)) is not None:
            expects.append(("EXPECT", key, str(partition), last))
        upto = None if partition in failed else delivered(partition)
        if upto is None:
            unsettled[partition] = stream
            continue
        news = (names or {}).get(partition, "")
        move: Command = ("CHECKPOINT", key, str(partition), upto, *bell(partition), news)
        if news and paged is not None and (page := paged(partition, upto, done)) is not None:
            move = (*move, *page)
        moves.append(move)
        written[partition] = upto
    return expects, moves, xacks, written, unsettled


PACKED_WORDS = 1_000
"""A commit of at most this many words sends them as one MessagePack array; a larger one
sends each as an argument of its own (`store/scripts/commit.lua` says why)."""


DECLARED = "*"
"""A fence that is none: the key is declared for the server's check alone (`declared`)."""


def declared(states: list[str], commands: list[Command]) -> tuple[list[str], list[str]]:
    """The commit script's KEYS on a cluster: the story state keys, then every other key
    its commands touch, once each; and the fences of the keys past the states. A slot
    that moves to another node does so a key at a time, and a script's keys not declared
    are found gone only when it reaches them: its writes before them made, its commit
    half done. Declared, the server runs it only where all of them are."""
    seen = dict.fromkeys(states)
    for command in commands:
        match command[0]:
            case "MSET":
                words = command[1::2]
            case "ADVANCE":  # its checkpoints, then the partition's stream
                words = (command[1], command[3])
            case _:
                words = (command[1],)
        for word in words:
            seen.setdefault(word.decode() if isinstance(word, bytes) else str(word))
    keys = list(seen)
    return keys, [DECLARED] * (len(keys) - len(states))


def script_args(
    fences: list[str], commands: list[Command], packed_words: int = PACKED_WORDS
) -> list[str | bytes | float]:
    """The commit script's ARGV: the fences, the commands' lengths (MessagePack), then
    their words: as one MessagePack array (in C, where a word a RESP argument cost the
    client a printf and two allocations) if there are at most `packed_words`, else one
    argument each. Packed, words of bytes go as text: the server's MessagePack reader
    (`cmsgpack`) knows no bytes type, and every such word is JSON, UTF-8 text already."""
    counts = [len(c) for c in commands]
    args: list[str | bytes | float] = [*fences, pack(counts)]
    if sum(counts) <= packed_words:
        args.append(pack([w.decode() if type(w) is bytes else w for c in commands for w in c]))
        return args
    for command in commands:
        args.extend(command)
    return args
