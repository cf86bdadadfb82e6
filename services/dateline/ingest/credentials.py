"""Feed credentials: one bearer token per feed, bound to its `source`, stored hashed.

    <prefix>:feeds          hash  name -> JSON Feed
    <prefix>:feeds:tokens   hash  sha256(token) hex -> name

Tokens as `store/tokens.py` makes them. Lookups go by the hash, and the stored name
is compared with `hmac.compare_digest`. Tokens never reach a log: only the feed's
name does.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import NamedTuple

import msgspec
import redis.asyncio as aioredis

from dateline.store.connection import is_cluster
from dateline.store.layout import feed_tokens_key, feeds_key
from dateline.store.tokens import new_token, token_hash
from dateline_schemas import Update
from dateline_schemas.correction import names_another_source
from dateline_schemas.updates import TYPES

_FEED_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
TOKEN_PREFIX = "dl_"  # noqa: S105 - a marker that tells a token apart, not a secret


_PREFIX = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


class Feed(msgspec.Struct, frozen=True):
    name: str
    source: str
    story_prefixes: list[str] = []
    """Empty: any story. Else the story id must start with one of these."""
    types: list[str] = []
    """Empty: any update type. Else only these."""
    created: float = 0.0
    revoked: bool = False
    editor: bool = False
    """The editor right (rule 5): its corrections and retractions may name another
    source's updates (`target_source`)."""


class FeedExists(ValueError):
    pass


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


class Refusal(NamedTuple):
    """Why an update is not let in: the field at fault and what is wrong with it."""

    field: str
    detail: str


def refusal(feed: Feed, update: Update) -> Refusal | None:
    """Why `feed` may not write `update`, or None if it may."""
    if update.source != feed.source:
        return Refusal(
            "source", f"feed {feed.name!r} publishes as {feed.source!r}, not {update.source!r}"
        )
    if feed.story_prefixes and not update.subject.startswith(tuple(feed.story_prefixes)):
        return Refusal(
            "subject",
            f"feed {feed.name!r} may write stories starting with "
            f"{', '.join(map(repr, feed.story_prefixes))}, not {update.subject!r}",
        )
    type_ = update.__struct_config__.tag
    if feed.types and type_ not in feed.types:
        return Refusal("type", f"feed {feed.name!r} may not publish {type_!r}")
    if not feed.editor and (target := names_another_source(update)) is not None:
        return Refusal(
            "data.target_source",
            f"rule 5: feed {feed.name!r} corrects and retracts only its own source's "
            f"updates ({feed.source!r}), not {target!r}'s; naming another source's needs "
            "the editor right (dateline feeds add --editor)",
        )
    return None


class Credentials:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.feeds_key, self.tokens_key = feeds_key(prefix), feed_tokens_key(prefix)

    async def add(
        self,
        name: str,
        source: str,
        story_prefixes: list[str] | None = None,
        types: list[str] | None = None,
        *,
        editor: bool = False,
    ) -> str:
        """Register a feed; returns its token, which is shown this once and stored hashed."""
        if not _FEED_NAME.fullmatch(name):
            raise ValueError(
                f"feed name: expected 1 to 63 of a-z, 0-9 and '-', starting with a letter or "
                f"digit, got {name!r} (it names the feed's inbox stream)"
            )
        for prefix in story_prefixes or []:
            if not _PREFIX.fullmatch(prefix):
                raise ValueError(
                    f"story prefix: expected 1 to 128 of a-z, 0-9 and '-' (the start of a "
                    f"story id), got {prefix!r}; an empty prefix would allow every story"
                )
        for type_ in types or []:
            if type_ not in TYPES:
                raise ValueError(
                    f"type: {type_!r} is no update type; the types are {', '.join(sorted(TYPES))}"
                )
        for other in await self.feeds():
            if other.source == source and not other.revoked:
                raise FeedExists(
                    f"source {source!r} is held by feed {other.name!r}: two feeds publishing "
                    "as one source could each correct the other's updates (rule 5)"
                )
        feed = Feed(
            name,
            source,
            list(story_prefixes or []),
            list(types or []),
            time.time(),
            editor=editor,
        )
        if not await self.client.hsetnx(self.feeds_key, name, msgspec.json.encode(feed)):
            raise FeedExists(f"feed {name!r} exists already; revoke it first or pick another name")
        token = new_token(TOKEN_PREFIX)
        await self.client.hset(self.tokens_key, token_hash(token), name)
        return token

    async def new_token(self, name: str) -> str:
        """Another token for an existing, unrevoked feed (its other tokens stay valid)."""
        feed = await self.get(name)
        if feed is None or feed.revoked:
            raise ValueError(f"feed {name!r} is not registered, or revoked")
        token = new_token(TOKEN_PREFIX)
        await self.client.hset(self.tokens_key, token_hash(token), name)
        return token

    async def authenticate(self, token: str) -> Feed | None:
        """The feed this token belongs to, if the token is valid and not revoked."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        name = await self.client.hget(self.tokens_key, token_hash(token))
        if name is None:
            return None
        raw = await self.client.hget(self.feeds_key, name)
        if raw is None:
            return None
        feed = msgspec.json.decode(raw, type=Feed)
        if feed.revoked or not hmac.compare_digest(feed.name.encode(), _b(name)):
            return None
        return feed

    async def revoke(self, name: str) -> bool:
        """Revoke every token of a feed at once; the feed stays listed, marked revoked."""
        raw = await self.client.hget(self.feeds_key, name)
        if raw is None:
            return False
        feed = msgspec.json.decode(raw, type=Feed)
        tokens = [
            h
            for h, n in (await self.client.hgetall(self.tokens_key)).items()
            if _b(n) == name.encode()
        ]
        # On a cluster the two hashes are in two slots, and no transaction holds them:
        # either write alone already refuses the tokens (unknown, or a revoked feed's).
        pipe = self.client.pipeline(transaction=not is_cluster(self.client))
        pipe.hset(
            self.feeds_key, name, msgspec.json.encode(msgspec.structs.replace(feed, revoked=True))
        )
        if tokens:
            pipe.hdel(self.tokens_key, *tokens)
        await pipe.execute()
        return True

    async def get(self, name: str) -> Feed | None:
        raw = await self.client.hget(self.feeds_key, name)
        return None if raw is None else msgspec.json.decode(raw, type=Feed)

    async def feeds(self) -> list[Feed]:
        raw = await self.client.hgetall(self.feeds_key)
        return sorted(
            (msgspec.json.decode(v, type=Feed) for v in raw.values()), key=lambda f: f.name
        )
