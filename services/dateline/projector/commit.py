"""What a batch writes, and the states the projector keeps between batches.

One commit script takes a batch's read-model writes, its acknowledgements and its
checkpoints in one step (`store/scripts/commit.lua`). It is fenced: each story's
stored state must still be the one the projector read or wrote (its SHA-1, "" for
none), else nothing is written and the projector reads the story again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

import msgspec

from dateline.domain.state import StoryState
from dateline.store.deadletters import Delivery
from dateline.store.readmodels import Command, ReadModels

# A kept state is bytes, not objects: the garbage collector does not see bytes, and
# thousands of kept states as objects made its collections the latency's p99 (20 to
# 50 ms, every few seconds). Decoding one costs about what the copy a batch needs did.
pack = msgspec.msgpack.Encoder().encode
unpack = msgspec.msgpack.Decoder(StoryState).decode


def fence(raw: bytes | None) -> str:
    """What the commit script compares a stored state with: its SHA-1, "" for none."""
    return "" if raw is None else hashlib.sha1(raw, usedforsecurity=False).hexdigest()


KEEP_BYTES = 32 * 2**20
"""The packed states a projector keeps between batches, at most (`Kept`)."""


class Kept:
    """The states the projector read or wrote last (packed) with their fences, the least
    recently used dropped past `size` states or `max_bytes` of them: a batch then costs a
    read and a write rather than the four round trips of WATCH, MGET, MULTI and EXEC.

    Bounded in bytes too: states grow with their stories, and a count alone let the
    projector grow 65 to 121 MB in six minutes of the soak (10,000 stories, 500/s)."""

    def __init__(self, size: int, max_bytes: int = KEEP_BYTES) -> None:
        self.size, self.max_bytes = size, max_bytes
        self.states: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.states)

    def __contains__(self, story: str) -> bool:
        return story in self.states

    def get(self, story: str) -> tuple[bytes, str] | None:
        found = self.states.get(story)
        if found is not None:
            self.states.move_to_end(story)  # used: the least recent go first
        return found

    def keep(self, story: str, state: bytes, sha: str) -> None:
        old = self.states.get(story)
        if old is not None:
            self.bytes -= len(old[0])
        self.states[story] = (state, sha)
        self.bytes += len(state)
        self.states.move_to_end(story)
        while self.states and (len(self.states) > self.size or self.bytes > self.max_bytes):
            _, (dropped, _) = self.states.popitem(last=False)
            self.bytes -= len(dropped)

    def clear(self) -> None:
        self.states.clear()
        self.bytes = 0

    def forget(self, stories: Sequence[str]) -> None:
        for story in stories:
            found = self.states.pop(story, None)
            if found is not None:
                self.bytes -= len(found[0])


Bell = Callable[[int], tuple[str, str]]
"""Partition N's doorbell: how the commit announces it, (`PUBLISH`, the one channel) on
one server, (`SPUBLISH`, the partition's sharded channel) on a cluster."""


def checkpoint_args(
    models: ReadModels, group: str, partition: int, stream: str, bell: Bell
) -> tuple[str, ...]:
    """advance()'s arguments (`store/scripts/advance.lua`) for one partition."""
    return (models.region(partition).checkpoint, str(partition), stream, group, *bell(partition))


def acks(models: ReadModels, group: str, acked: list[Delivery], bell: Bell) -> list[Command]:
    """XACK of what was applied or seen, and the checkpoint advance, per partition."""
    streams: dict[int, list[Delivery]] = {}
    for d in acked:
        streams.setdefault(d.partition, []).append(d)
    out: list[Command] = []
    for partition, done in streams.items():
        out.append(("XACK", done[0].stream, group, *[d.entry_id for d in done]))
        out.append(("ADVANCE", *checkpoint_args(models, group, partition, done[0].stream, bell)))
    return out


def script_args(fences: list[str], commands: list[Command]) -> list[str | bytes | float]:
    """The commit script's ARGV: the fences, then each command as its length and words."""
    args: list[str | bytes | float] = list(fences)
    for command in commands:
        args.append(len(command))
        args.extend(command)
    return args
