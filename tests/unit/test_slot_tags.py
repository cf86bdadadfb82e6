"""Where a log's partitions land on a cluster: slot tags for a log made there, and the
partition count a new cluster log gets."""

from __future__ import annotations

from redis.crc import key_slot

from dateline.store.layout import SLOTS, Keys, slot_of
from dateline.store.log import CLUSTER_PARTITIONS


def _masters(count: int) -> list[range]:
    """The slot ranges `valkey-cli --cluster create` gives `count` masters: even shares."""
    bounds = [round(n * SLOTS / count) for n in range(count + 1)]
    return [range(bounds[n], bounds[n + 1]) for n in range(count)]


def _spread(keys: Keys, masters: int) -> list[int]:
    """How many of the log's partition streams each master holds."""
    slots = [slot_of(keys.tag(p).strip("{}")) for p in range(keys.partitions)]
    return [sum(s in held for s in slots) for held in _masters(masters)]


def test_the_cluster_default_spreads_evenly_over_3_6_and_12_masters() -> None:
    keys = Keys("t", CLUSTER_PARTITIONS, slotted=True)
    for masters in (1, 2, 3, 4, 6, 8, 12, 16, 24, 48):
        assert _spread(keys, masters) == [CLUSTER_PARTITIONS // masters] * masters, masters
    for masters in (5, 7, 9, 10):  # as even as 48 allows
        assert max(_spread(keys, masters)) - min(_spread(keys, masters)) == 1, masters
    # Plain tags do not: 8 of them fall 2/2/4 on 3 masters.
    assert sorted(_spread(Keys("t", 8), 3)) == [2, 2, 4]
    assert sorted(_spread(Keys("t", 8, slotted=True), 3)) == [2, 3, 3]


def test_slot_tags_are_the_partitions_own_and_name_them() -> None:
    keys = Keys("t", CLUSTER_PARTITIONS, slotted=True)
    tags = [keys.tag(p) for p in range(keys.partitions)]
    assert len(set(tags)) == len(tags)
    assert all(tag.startswith(f"{{p{p}.") for p, tag in enumerate(tags))
    # Every key of a partition carries its tag: one slot (and `{p*}` in ACL patterns).
    p = keys.partition("hanoi-summit-2019")
    for key in (keys.log(p), keys.ids(p), keys.seal(p), keys.story("hanoi-summit-2019")):
        assert f":{tags[p]}:" in key
    assert Keys("t", 8).log(3) == "t:{p3}:log"  # a log made on one server keeps its keys
    # The server's CRC16 (redis-py's, as the cluster client routes keys).
    assert slot_of("p0") == key_slot(b"{p0}:anything")
