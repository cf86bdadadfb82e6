"""What a query process keeps of its reads (`query/cache.py`, `KnownGrants`): kept only
while the change channel is heard, dropped on the news that makes it old, never put
back from a read that began before that news; bounded in age and size. Pure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from dateline.query.cache import InFlight, SharedReads, StoryCache
from dateline.store.doorbell import READERS, SWITCH
from dateline.store.readers import Grant, KnownGrants, Scrapers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def partition(story: str) -> int:
    return int(story[-1])  # "s3" is in partition 3


def cache(**kw: object) -> tuple[StoryCache, Clock]:
    clock = Clock()
    c = StoryCache(4, partition, clock=clock, **kw)  # type: ignore[arg-type]
    c.heard(None, live=True)  # the doorbell's subscription made
    return c, clock


def keep(c: StoryCache, story: str, raw: bytes = b"{}", version: str = "v1") -> None:
    c.put(version, story, c.generation(story), raw, None)


def test_a_read_is_kept_until_its_partition_commits() -> None:
    c, _ = cache()
    keep(c, "s1", b"one")
    keep(c, "s2", b"two")
    assert c.get("v1", "s1").raw == b"one"  # type: ignore[union-attr]
    c.heard(b"1:1700000000000-0", live=True)  # a commit to partition 1
    assert c.get("v1", "s1") is None
    assert c.get("v1", "s2").raw == b"two"  # type: ignore[union-attr]
    assert c.get("v2", "s2") is None  # another projection version is another read


def test_a_commit_that_names_its_stories_drops_those_alone() -> None:
    """`<partition>:<checkpoint> <story> ...` (`projector.commit.named`): the others of
    the partition stay kept, in every projection version; a read of the partition that
    began before it is not kept, since it cannot say which commits it saw."""
    c, _ = cache()
    keep(c, "a1", b"a")
    keep(c, "b1", b"b")
    keep(c, "b1", b"b2", version="v2")
    keep(c, "c2", b"c")
    generation = c.generation("d1")
    c.heard(b"1:5-0 b1 x1", live=True)
    assert c.get("v1", "a1").raw == b"a"  # type: ignore[union-attr]
    assert c.get("v1", "b1") is None and c.get("v2", "b1") is None
    assert c.get("v1", "c2").raw == b"c"  # type: ignore[union-attr]
    c.put("v1", "d1", generation, b"maybe older", None)
    assert c.get("v1", "d1") is None
    c.heard(b"1:6-0", live=True)  # one that names none: the whole partition
    assert c.get("v1", "a1") is None
    assert c.get("v1", "c2").raw == b"c"  # type: ignore[union-attr]
    c.heard(b"9:1-0 z9", live=True)  # a partition this process does not know: all
    assert c.get("v1", "c2") is None


def test_a_read_that_began_before_the_news_is_not_kept() -> None:
    c, _ = cache()
    generation = c.generation("s1")  # the read goes out ...
    c.heard(b"1:5-0", live=True)  # ... the commit's news comes in ...
    c.put("v1", "s1", generation, b"maybe older", None)  # ... then the read's reply
    assert c.get("v1", "s1") is None
    keep(c, "s1", b"after")
    assert c.get("v1", "s1").raw == b"after"  # type: ignore[union-attr]


def test_nothing_is_kept_unless_the_channel_is_heard() -> None:
    c = StoryCache(4, partition)
    keep(c, "s1")
    assert c.get("v1", "s1") is None  # not subscribed yet
    c.heard(None, live=True)
    keep(c, "s1")
    assert c.get("v1", "s1") is not None
    c.heard(None, live=False)  # the subscription broke: all is dropped, none kept
    assert c.get("v1", "s1") is None
    keep(c, "s1")
    assert c.get("v1", "s1") is None


def test_a_switch_or_an_unknown_message_drops_everything_readers_news_nothing() -> None:
    for message, dropped in (
        (SWITCH, True),
        (b"garbage", True),
        (b"9:1-0", True),
        (READERS, False),
    ):
        c, _ = cache()
        keep(c, "s1")
        c.heard(message, live=True)
        assert (c.get("v1", "s1") is None) is dropped, message


def test_what_was_too_large_is_forgotten_with_everything_else() -> None:
    """Each long story a process read stayed named in its set for every projection
    version it had seen, never let go; a switch now lets the old version's go, and the
    new version's next read names the story again."""
    c, _ = cache(max_bytes=8_000)
    keep(c, "s1", b"x" * 2_000, version="v1")
    assert c.too_large("v1", "s1")
    c.heard(SWITCH, live=True)
    assert not c.too_large("v1", "s1")
    assert c._large == set() and c._versions == set()
    keep(c, "s1", b"x" * 2_000, version="v2")
    assert c.too_large("v2", "s1")
    keep(c, "s1", b"x", version="v2")  # read small again
    assert not c.too_large("v2", "s1")


def test_a_kept_read_is_at_most_max_age_old() -> None:
    c, clock = cache(max_age_s=1.0)
    keep(c, "s1")
    clock.now += 0.9
    assert c.get("v1", "s1") is not None
    clock.now += 0.2
    assert c.get("v1", "s1") is None


def test_the_least_recently_read_go_first_past_max_bytes() -> None:
    c, _ = cache(max_bytes=8_000)
    keep(c, "s1", b"x" * 200)
    keep(c, "s2", b"x" * 200)
    c.get("v1", "s1")  # read lately: s2 is the least recent
    for n in range(3, 40):
        keep(c, f"t{n}s3", b"x" * 200)
        if ("v1", "s2") not in c._entries:  # looked at without reading it
            break
    assert c.get("v1", "s2") is None and c.get("v1", "s1") is not None
    assert c._bytes <= 8_000
    keep(c, "s0", b"x" * 600)  # over an eighth of the budget: not kept at all
    assert c.get("v1", "s0") is None


def test_off_at_zero_bytes() -> None:
    c, _ = cache(max_bytes=0)
    keep(c, "s1")
    assert c.get("v1", "s1") is None


def test_a_partition_dropped_by_a_read_your_writes_wait() -> None:
    c, _ = cache()
    keep(c, "s1")
    keep(c, "s2")
    c.drop_partition(1)
    assert c.get("v1", "s1") is None and c.get("v1", "s2") is not None


GRANT = Grant("desk", "reader", ["hanoi-"])


def grants() -> tuple[KnownGrants, Clock]:
    clock = Clock()
    known = KnownGrants(max_age_s=1.0, max_entries=3, clock=clock)
    known.heard(None, live=True)
    return known, clock


def test_a_grant_is_known_until_a_revocation_is_heard() -> None:
    known, _ = grants()
    known.put("h1", GRANT, known.generation)
    assert known.get("h1") == GRANT
    known.heard(b"1:5-0", live=True)  # a commit: nothing to do with readers
    assert known.get("h1") == GRANT
    known.heard(READERS, live=True)
    assert known.get("h1") is None


def test_a_grant_read_before_a_revocation_was_heard_is_not_kept() -> None:
    known, _ = grants()
    generation = known.generation
    known.heard(READERS, live=True)
    known.put("h1", GRANT, generation)
    assert known.get("h1") is None


def test_grants_are_kept_a_second_at_most_only_while_heard_and_bounded() -> None:
    known, clock = grants()
    known.put("h1", GRANT, known.generation)
    clock.now += 1.1
    assert known.get("h1") is None
    known.heard(None, live=False)
    known.put("h2", GRANT, known.generation)
    assert known.get("h2") is None
    known.heard(None, live=True)
    for n in range(4):
        known.put(f"k{n}", GRANT, known.generation)
    assert len(known._known) <= 3
    known.drop("k3")
    assert known.get("k3") is None


def test_a_listing_is_kept_until_any_commit_or_its_until() -> None:
    c, _ = cache()
    generation = c.listings_generation
    c.put_listing("k", generation, b"[]", '"t"', until=float("inf"))
    assert c.listing("k") == (b"[]", '"t"')
    c.heard(b"3:1-0", live=True)  # a commit anywhere
    assert c.listing("k") is None
    c.put_listing("k", generation, b"[]", '"t"', until=float("inf"))  # read before it
    assert c.listing("k") is None
    c.put_listing("k", c.listings_generation, b"[]", '"t"', until=0.0)  # overdue since
    assert c.listing("k") is None


async def test_streams_with_the_same_bell_and_cursor_share_one_read() -> None:
    shared: SharedReads[str, str] = SharedReads("test")
    calls: list[str] = []
    go = asyncio.Event()

    async def read(what: str) -> str:
        calls.append(what)
        await go.wait()
        return what

    bell = asyncio.Event()
    first = asyncio.ensure_future(shared.read("c1", bell, lambda: read("a")))
    second = asyncio.ensure_future(shared.read("c1", bell, lambda: read("b")))
    other = asyncio.ensure_future(shared.read("c2", bell, lambda: read("c")))  # another cursor
    await asyncio.sleep(0)
    go.set()
    assert list(await asyncio.gather(first, second, other)) == ["a", "a", "c"]
    assert calls == ["a", "c"]
    assert await shared.read("c1", bell, lambda: read("d")) == "a"  # kept until it rings
    bell.set()  # a ring: a stream that took the new bell reads anew; the old reads go
    assert await shared.read("c1", asyncio.Event(), lambda: read("e")) == "e"
    assert calls == ["a", "c", "e"] and len(shared) == 1


async def test_a_stream_that_leaves_does_not_cancel_the_read_of_the_others() -> None:
    shared: SharedReads[str, str] = SharedReads("test")
    go = asyncio.Event()

    async def read() -> str:
        await go.wait()
        return "page"

    bell = asyncio.Event()
    leaving = asyncio.ensure_future(shared.read("c", bell, read))
    staying = asyncio.ensure_future(shared.read("c", bell, read))
    await asyncio.sleep(0)
    leaving.cancel()
    go.set()
    assert await staying == "page"


async def test_a_failed_read_is_not_shared_with_the_next() -> None:
    shared: SharedReads[str, str] = SharedReads("test")
    bell = asyncio.Event()

    async def down() -> str:
        raise ConnectionError("the server is down")

    async def up() -> str:
        return "page"

    with pytest.raises(ConnectionError):
        await shared.read("c", bell, down)
    assert await shared.read("c", bell, up) == "page"  # same bell: read again all the same


async def test_a_shared_read_is_let_go_when_its_bell_rings_with_no_read_after() -> None:
    """Streams waiting on their clients read no more: what they read last is not kept
    until the next read, only until the doorbell rings (`Doorbell.rung`)."""
    shared: SharedReads[str, list[int]] = SharedReads("test")
    bell, later = asyncio.Event(), asyncio.Event()

    async def page() -> list[int]:
        return [1, 2, 3]

    await shared.read("behind", bell, page)
    await shared.read("live", later, page)
    assert len(shared) == 2
    bell.set()
    shared.forget_rung()
    assert len(shared) == 1  # the one whose bell has not rung stays for those who ask


async def test_asks_alike_while_a_read_runs_share_it_and_it_is_forgotten_once_done() -> None:
    flying: InFlight[str, object] = InFlight("test")
    calls: list[str] = []
    go = asyncio.Event()

    def read(what: str) -> Callable[[int], Awaitable[object]]:
        async def reading(_: int) -> object:
            calls.append(what)
            await go.wait()
            return object()  # one of its own each read

        return reading

    first = asyncio.ensure_future(flying.read("s1", lambda: 0, read("a")))
    second = asyncio.ensure_future(flying.read("s1", lambda: 0, read("b")))
    other = asyncio.ensure_future(flying.read("s2", lambda: 0, read("c")))
    await asyncio.sleep(0)
    go.set()
    one, two, three = await asyncio.gather(first, second, other)
    assert one is two and one is not three
    assert calls == ["a", "c"] and len(flying) == 0  # done: the next asks anew
    assert await flying.read("s1", lambda: 0, read("d")) is not one
    assert calls == ["a", "c", "d"]


async def test_those_after_a_commit_wait_for_the_running_read_and_share_the_next() -> None:
    """One read at a time a story: those that may not take the running one (a commit
    heard since it began) share one read begun after it ends, with the generation then."""
    flying: InFlight[str, tuple[str, int]] = InFlight("test")
    generation, began, gates = 0, [], [asyncio.Event(), asyncio.Event()]

    async def read(at: int) -> tuple[str, int]:
        began.append(at)
        await gates[len(began) - 1].wait()
        return f"read {len(began)}", at

    def ask() -> asyncio.Future[tuple[str, int]]:
        return asyncio.ensure_future(flying.read("s", lambda: generation, read))

    before = [ask(), ask()]
    await asyncio.sleep(0)
    generation = 1  # a commit heard
    after = [ask(), ask()]
    await asyncio.sleep(0)
    generation = 2  # another, still while the first read runs
    later = ask()
    await asyncio.sleep(0.01)
    assert began == [0]  # the next waits for the running one
    gates[0].set()
    assert [await f for f in before] == [("read 1", 0)] * 2
    await asyncio.sleep(0.01)
    assert began == [0, 2]  # one read for the three after: begun after they all asked
    gates[1].set()
    assert [await f for f in [*after, later]] == [("read 2", 2)] * 3
    assert len(flying) == 0


async def test_a_request_that_leaves_does_not_cancel_the_read_of_the_others() -> None:
    flying: InFlight[str, str] = InFlight("test")
    go = asyncio.Event()

    async def read(_: int) -> str:
        await go.wait()
        return "story"

    leaving = asyncio.ensure_future(flying.read("s", lambda: 0, read))
    staying = asyncio.ensure_future(flying.read("s", lambda: 0, read))
    await asyncio.sleep(0)
    leaving.cancel()
    go.set()
    assert await staying == "story"


async def test_a_failed_read_fails_those_who_joined_it_and_the_next_reads_anew() -> None:
    flying: InFlight[str, str] = InFlight("test")
    go, generation = asyncio.Event(), 0

    async def read(at: int) -> str:
        await go.wait()
        if at == 0:
            raise ConnectionError("the server is down")
        return "story"

    joined = [asyncio.ensure_future(flying.read("s", lambda: generation, read)) for _ in "ab"]
    await asyncio.sleep(0)
    generation = 1
    queued = asyncio.ensure_future(flying.read("s", lambda: generation, read))
    await asyncio.sleep(0)
    go.set()
    for failed in await asyncio.gather(*joined, return_exceptions=True):
        assert isinstance(failed, ConnectionError)
    assert await queued == "story"
    assert await flying.read("s", lambda: generation, read) == "story"


OPS = Grant("prometheus", "ops")


def test_a_scraper_checked_within_the_hour_scrapes_through_an_outage() -> None:
    now = [0.0]
    scrapers = Scrapers(max_age_s=3600.0, clock=lambda: now[0])
    assert scrapers.through_outage("dr_a") is None  # never checked
    scrapers.checked("dr_a", OPS)
    now[0] = 3599.0
    assert scrapers.through_outage("dr_a") == OPS
    assert scrapers.through_outage("dr_b") is None
    now[0] = 3601.0
    assert scrapers.through_outage("dr_a") is None  # checked too long ago


def test_a_scraper_refused_or_not_ops_is_not_kept() -> None:
    scrapers = Scrapers()
    scrapers.checked("dr_a", OPS)
    scrapers.checked("dr_a", None)  # Redis said: unknown or revoked
    assert scrapers.through_outage("dr_a") is None
    scrapers.checked("dr_c", GRANT)  # a reader, not ops: it could not scrape anyway
    assert scrapers.through_outage("dr_c") is None


def test_a_revocation_heard_forgets_the_scrapers_and_the_bell_going_quiet_does_not() -> None:
    scrapers = Scrapers()
    scrapers.checked("dr_a", OPS)
    scrapers.heard(None, live=False)  # the doorbell lost its server: an outage
    assert scrapers.through_outage("dr_a") == OPS
    scrapers.heard(SWITCH, live=True)
    assert scrapers.through_outage("dr_a") == OPS
    scrapers.heard(READERS, live=True)
    assert scrapers.through_outage("dr_a") is None


def test_scrapers_are_few_and_a_flood_of_them_does_not_grow_the_memory() -> None:
    scrapers = Scrapers(max_entries=4)
    for n in range(10):
        scrapers.checked(f"dr_{n}", OPS)
    kept = [n for n in range(10) if scrapers.through_outage(f"dr_{n}") is not None]
    assert 0 < len(kept) <= 4 and 9 in kept
