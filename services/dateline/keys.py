"""Where everything lives in Redis.

Every key of a story carries the hash tag of the story's partition, `{pN}`, and so
does that partition's stream: one append script touches a single cluster slot.

    <prefix>:config                 hash: partitions (fixed once the log exists)
    <prefix>:{pN}:log               stream: partition N of the log, never trimmed
    <prefix>:{pN}:ids               hash: "<len>:<source><id>" -> "version position story"
    <prefix>:{pN}:story:<story>     list: the story's records; index i holds version i+1
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


def partition_of(story: str, partitions: int) -> int:
    """CRC-32 (IEEE, as zlib and every language's stdlib computes it) of the UTF-8 id, mod P."""
    return zlib.crc32(story.encode()) % partitions


def dedup_field(source: str, update_id: str) -> str:
    """Length-prefixed so that no (source, id) pair can spell another's field."""
    return f"{len(source)}:{source}{update_id}"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str
    partitions: int

    @property
    def config(self) -> str:
        return f"{self.prefix}:config"

    def partition(self, story: str) -> int:
        return partition_of(story, self.partitions)

    def log(self, partition: int) -> str:
        return f"{self.prefix}:{{p{partition}}}:log"

    def ids(self, partition: int) -> str:
        return f"{self.prefix}:{{p{partition}}}:ids"

    def story(self, story: str, partition: int | None = None) -> str:
        """The story's history list; pass `partition` when it is known already."""
        part = self.partition(story) if partition is None else partition
        return f"{self.prefix}:{{p{part}}}:story:{story}"

    def logs(self) -> list[str]:
        return [self.log(p) for p in range(self.partitions)]
