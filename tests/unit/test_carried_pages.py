"""Pages carried by the doorbell: which commits carry one, and what a stream takes from them."""

from __future__ import annotations

import msgspec
import pytest

from dateline.domain.positions import Cursor
from dateline.projector.commit import PAGE_ENTRIES, Carry, page_of
from dateline.query.carried import KEEP, Carried
from dateline.store.deadletters import Delivery
from dateline.store.pages import MARK, Page, decode_page, encode_page, split

HOLD = object()
LAST = Carry(HOLD, 10, "5-0")


def delivery(n: int, story: str = "s1", partition: int = 0) -> Delivery:
    return Delivery(partition, "log", f"{n}-0", story, b'{"n":%d}' % n)


def made(
    done: list[Delivery],
    since: Carry | None = LAST,
    tally: tuple[object, int] | str | None = "as many as it holds",
    index: dict[str, bytes] | None = None,
) -> tuple[str, bytes] | None:
    held = (HOLD, 10 + len(done)) if isinstance(tally, str) else tally
    index = {"s1": b'{"i":1}', "s2": b'{"i":2}'} if index is None else index
    opened = lambda d: d.raw.replace(b"n", b"m")  # noqa: E731 - as a reader of the log opens it
    return page_of("v1", 0, "9-0", done, since, held, index, opened)


def test_a_commit_that_holds_every_entry_since_the_last_carries_them_in_order() -> None:
    got = made([delivery(8, "s2"), delivery(6), delivery(7)])
    assert got is not None
    after, raw = got
    page = decode_page(raw)
    assert (after, page.version, page.partition, page.after, page.upto) == (
        "5-0",
        "v1",
        0,
        "5-0",
        "9-0",
    )
    assert [(e, bytes(r)) for e, r in page.entries] == [
        ("6-0", b'{"m":6}'),
        ("7-0", b'{"m":7}'),
        ("8-0", b'{"m":8}'),
    ]
    assert {s: bytes(e) for s, e in page.index.items()} == {"s1": b'{"i":1}', "s2": b'{"i":2}'}


@pytest.mark.parametrize(
    ("case", "kw"),
    [
        ("no commit landed before it here", {"since": None}),
        ("the partition is no longer held", {"tally": None}),
        ("the lease was taken again since", {"tally": (object(), 12)}),
        ("an entry read since is not in it (set aside)", {"tally": (HOLD, 13)}),
        ("a story it did not write", {"index": {"s2": b"{}"}}),
    ],
)
def test_a_commit_that_cannot_vouch_for_its_entries_carries_none(
    case: str, kw: dict[str, object]
) -> None:
    assert made([delivery(6), delivery(7, "s2")], **kw) is None, case  # type: ignore[arg-type]


def test_a_large_commit_is_read_not_carried() -> None:
    many = [delivery(n) for n in range(6, 6 + PAGE_ENTRIES + 1)]
    assert made(many) is None
    assert made(many[:PAGE_ENTRIES]) is not None
    assert made([]) is None


def test_a_message_and_its_page_split_where_older_readers_see_more_names() -> None:
    page = encode_page(Page("v1", 0, "5-0", "9-0", [], {}))
    message = b"0:9-0 s1 s2" + MARK + page
    assert split(message) == (b"0:9-0 s1 s2", page)
    assert split(b"0:9-0 s1") == (b"0:9-0 s1", None)
    # What a reader of an older release parses (`cache.StoryCache.heard`): the first
    # word is the checkpoint still; the page's words are names of no story.
    assert message.partition(b":")[2].split(b" ")[:3] == [b"9-0", b"s1", b"s2"]


def page(partition: int, after: str, upto: str, *ids: str, version: str = "v1") -> bytes:
    entries = [(i, msgspec.Raw(b'{"id":"%s"}' % i.encode())) for i in ids]
    index = {f"s{partition}": msgspec.Raw(b'{"at":"%s"}' % upto.encode())}
    return encode_page(Page(version, partition, after, upto, entries, index))


def listening(partitions: int = 2) -> Carried:
    carried = Carried(partitions)
    carried.heard(None, True)
    return carried


def at(*ids: tuple[int, int]) -> Cursor:
    return Cursor(tuple(ids))


def test_a_stream_walks_the_pages_from_its_cursor_to_what_was_announced() -> None:
    carried = listening()
    carried.page(page(0, "5-0", "7-0", "6-0", "7-0"))
    carried.heard(b"0:7-0 s0", True)
    carried.page(page(0, "7-0", "9-0", "9-0"))
    carried.heard(b"0:9-0 s0", True)
    carried.page(page(1, "3-0", "8-0", "8-0"))
    carried.heard(b"1:8-0 s1", True)
    got = carried.since(at((5, 0), (3, 0)), "v1")
    assert got is not None
    found, entries = got
    assert [(sid, p) for sid, p, _ in found] == [((6, 0), 0), ((7, 0), 0), ((8, 0), 1), ((9, 0), 0)]
    assert entries == {"s0": b'{"at":"9-0"}', "s1": b'{"at":"8-0"}'}
    # From half-way, and from where it was all announced: nothing more.
    half = carried.since(at((7, 0), (8, 0)), "v1")
    assert half is not None and [sid for sid, _, _ in half[0]] == [(9, 0)]
    assert carried.since(at((9, 0), (8, 0)), "v1") == ([], {})


def test_a_missing_page_another_version_or_no_subscription_means_a_read() -> None:
    carried = listening()
    carried.page(page(0, "7-0", "9-0", "9-0"))
    carried.heard(b"0:9-0 s0", True)
    assert carried.since(at((5, 0), (0, 0)), "v1") is None  # 5-0 to 7-0 was not carried
    assert carried.since(at((7, 0), (0, 0)), "v2") is None  # a rebuild's version
    assert carried.since(at((7, 0), (0, 0)), "v1") is not None
    carried.heard(None, False)
    assert carried.since(at((7, 0), (0, 0)), "v1") is None
    carried.heard(None, True)  # made again: what it kept was forgotten
    assert carried.since(at((7, 0), (0, 0)), "v1") == ([], {})
    carried.heard(b"0:9-0 s0", True)
    assert carried.since(at((7, 0), (0, 0)), "v1") is None


def test_an_announcement_never_goes_back_and_an_unreadable_one_forces_a_read() -> None:
    carried = listening()
    carried.heard(b"0:9-0", True)
    carried.heard(b"0:4-0", True)  # a rebuild's commit, behind the active version
    assert carried.announced[0] == (9, 0)
    carried.heard(b"switch", True)
    assert carried.announced[0] == (9, 0)
    carried.heard(b"1:later", True)
    assert carried.since(at((9, 0), (3, 0)), "v1") is None


def test_pages_kept_are_bounded_and_a_stream_further_behind_reads() -> None:
    carried = listening(1)
    for n in range(KEEP + 5):
        carried.page(page(0, f"{n}-0", f"{n + 1}-0", f"{n + 1}-0"))
    carried.heard(f"0:{KEEP + 5}-0".encode(), True)
    assert len(carried.pages[("v1", 0)]) == KEEP
    assert carried.since(at((0, 0)), "v1") is None
    kept = carried.since(at((5, 0)), "v1")
    assert kept is not None and len(kept[0]) == KEEP
    carried.page(b"not a page")  # logged, and read instead
    assert len(carried.pages[("v1", 0)]) == KEEP
    carried.page(page(0, "1-0", "2-0", "2-0", version="v2"))  # switched: v1's are dropped
    assert list(carried.pages) == [("v2", 0)]
