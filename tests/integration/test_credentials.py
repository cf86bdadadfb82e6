"""Feed credentials refuse what would widen a feed's reach by accident (issue 19's probe)."""

from __future__ import annotations

import pytest

from dateline.ingest.credentials import Credentials, FeedExists
from dateline.store.log import Log


async def test_feeds_add_refuses_an_empty_prefix_an_unknown_type_and_a_held_source(
    log: Log,
) -> None:
    creds = Credentials(log.redis, log.keys.prefix)
    with pytest.raises(ValueError, match="empty prefix would allow every story"):
        await creds.add("a", "urn:feed:a", story_prefixes=[""])
    with pytest.raises(ValueError, match=r"story prefix: .*'Hanoi'"):
        await creds.add("a", "urn:feed:a", story_prefixes=["Hanoi"])
    with pytest.raises(ValueError, match=r"'dateline\.story\.deleted' is no update type"):
        await creds.add("a", "urn:feed:a", types=["dateline.story.deleted"])
    assert await creds.feeds() == []  # nothing registered by a refusal
    await creds.add("a", "urn:feed:a", story_prefixes=["hanoi-"], types=["dateline.story.opened"])
    with pytest.raises(FeedExists, match="held by feed 'a'"):
        await creds.add("b", "urn:feed:a")
    await creds.revoke("a")
    assert await creds.add("b", "urn:feed:a")  # a revoked feed's source is free again
