"""Reader credentials for the query side: who may read what, and their sessions.

    <prefix>:readers                 hash    name -> JSON Grant
    <prefix>:readers:tokens          hash    sha256(token) -> JSON Grant
    <prefix>:session:<sha256(id)>    string  JSON Grant, expiring (a browser's session)
    <prefix>:readers:sessions:<name> set     its readers' session keys, ended on revoke
    <prefix>:signin:<sha256(code)>   string  reader name, expiring, used once

A token's record is kept under its hash whole, so a request costs one `HGET`; a
revocation deletes the reader's tokens and sessions, so it holds from the next request.
Tokens, session ids and sign-in codes are stored only as hashes: a copy of the data
signs nobody in.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from dateline.store.connection import is_cluster
from dateline.store.doorbell import READERS
from dateline.store.layout import (
    changes_channel,
    reader_sessions_key,
    reader_tokens_key,
    readers_key,
    session_key,
    signin_key,
)
from dateline.store.tokens import new_token, token_hash

Role = Literal["reader", "editor", "ops"]
ROLES: tuple[Role, ...] = ("reader", "editor", "ops")
TOKEN_PREFIX = "dr_"  # noqa: S105 - a marker that tells a reader's token apart, not a secret
SESSION_S = 12 * 3600
"""A browser's session lasts this long from sign-in."""
SIGNIN_S = 15 * 60
"""A one-time sign-in link works this long, once."""
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PREFIX = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


class Grant(msgspec.Struct, frozen=True):
    """What a reader's token grants: a role, and the stories it may see."""

    name: str
    role: Role = "reader"
    story_prefixes: list[str] = []
    """Empty: every story. Else only the stories whose id starts with one of these."""
    created: float = 0.0
    revoked: bool = False

    def sees(self, story: str) -> bool:
        return not self.story_prefixes or story.startswith(tuple(self.story_prefixes))

    @property
    def audits(self) -> bool:
        """Sees the audit trail whole: the content of an update recalled as erroneous."""
        return self.role in ("editor", "ops")

    @property
    def operates(self) -> bool:
        """Sees the operations: `/v1/status`, `/metrics`, the operations page."""
        return self.role == "ops"


class ReaderExists(ValueError):
    pass


_decode = msgspec.json.Decoder(Grant).decode


class KnownGrants:
    """Grants a query process checked lately, by the hash of a token or session, so that
    a dashboard's every request is not a round trip to learn what it learned a moment
    ago. Kept `max_age_s` at most, and only while the change channel is heard (`live`):
    a revocation is published there (`READERS`), and drops them all at once."""

    def __init__(
        self,
        max_age_s: float = 1.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s, self.max_entries, self.clock = max_age_s, max_entries, clock
        self.live = False
        self.generation = 0
        self._known: dict[str, tuple[float, Grant]] = {}

    def get(self, key: str) -> Grant | None:
        kept = self._known.get(key) if self.live else None
        if kept is None or self.clock() - kept[0] > self.max_age_s:
            return None
        return kept[1]

    def put(self, key: str, grant: Grant, generation: int) -> None:
        if not self.live or generation != self.generation:
            return  # a revocation was heard since the read began
        if len(self._known) >= self.max_entries:
            self._known.clear()
        self._known[key] = (self.clock(), grant)

    def drop(self, key: str) -> None:
        self._known.pop(key, None)

    def heard(self, message: bytes | None, live: bool) -> None:
        """The doorbell's news (`Doorbell.listeners`)."""
        self.live = live
        if message is None or message == READERS:
            self.generation += 1
            self._known.clear()


class Scrapers:
    """The `ops` tokens that scraped `/metrics` lately, by their hash, each with its
    grant and when Redis last said it was valid. While Redis cannot be reached, a scrape
    with one checked within `max_age_s` is answered still: the service's own metrics,
    its failures among them, go on being scraped through an outage of the server that
    holds the tokens, and Prometheus does not read the outage as the service down. A
    token revoked is refused at the next scrape Redis answers, and forgotten at once
    where the process hears revocations (`heard`: the query service); elsewhere
    (ingest) one revoked in the `max_age_s` before an outage may scrape through it
    (`/metrics` only: no story)."""

    def __init__(
        self,
        max_age_s: float = 3600.0,
        max_entries: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s, self.max_entries, self.clock = max_age_s, max_entries, clock
        self._checked: dict[str, tuple[float, Grant]] = {}

    def checked(self, token: str, grant: Grant | None) -> None:
        """What Redis said of a scrape's token: an `ops` grant is kept, anything else
        forgotten."""
        hashed = token_hash(token)
        if grant is None or not grant.operates:
            self._checked.pop(hashed, None)
            return
        if hashed not in self._checked and len(self._checked) >= self.max_entries:
            self._checked.clear()  # a few scrapers in practice; strangers are not kept
        self._checked[hashed] = (self.clock(), grant)

    def heard(self, message: bytes | None, live: bool) -> None:
        """The doorbell's news (`Doorbell.listeners`): a revocation forgets every scraper
        at once. Not the bell going quiet, which an outage is."""
        if message == READERS:
            self._checked.clear()

    def through_outage(self, token: str) -> Grant | None:
        """The grant of a token checked within `max_age_s`, for a scrape Redis cannot
        check now; None for any other."""
        kept = self._checked.get(token_hash(token))
        if kept is None or self.clock() - kept[0] > self.max_age_s:
            return None
        return kept[1]


class Readers:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        known: KnownGrants | None = None,
        bell: aioredis.Redis | None = None,
    ) -> None:
        """`bell`: where the query processes hear of changes, if not on `client`'s server
        (a store of read models of its own: `DATELINE_VIEWS_URL`)."""
        self.client, self.prefix, self.known = client, prefix, known
        self.bell = bell
        self.key, self.tokens_key = readers_key(prefix), reader_tokens_key(prefix)

    async def add(
        self, name: str, role: Role = "reader", story_prefixes: list[str] | None = None
    ) -> str:
        """Register a reader; returns its token, shown this once and stored hashed."""
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"reader name: expected 1 to 63 of a-z, 0-9 and '-', starting with a letter "
                f"or digit, got {name!r}"
            )
        if role not in ROLES:
            raise ValueError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
        for prefix in story_prefixes or []:
            if not _PREFIX.fullmatch(prefix):
                raise ValueError(
                    f"story prefix: expected 1 to 128 of a-z, 0-9 and '-' (the start of a "
                    f"story id), got {prefix!r}; an empty prefix would allow every story"
                )
        reader = Grant(name, role, sorted(set(story_prefixes or [])), time.time())
        record = msgspec.json.encode(reader)
        if not await self.client.hsetnx(self.key, name, record):
            raise ReaderExists(
                f"reader {name!r} exists already; revoke it first or pick another name"
            )
        token = new_token(TOKEN_PREFIX)
        await self.client.hset(self.tokens_key, token_hash(token), record)
        return token

    async def get(self, name: str) -> Grant | None:
        raw = await self.client.hget(self.key, name)
        return None if raw is None else _decode(raw)

    async def readers(self) -> list[Grant]:
        raw = await self.client.hgetall(self.key)
        return sorted((_decode(v) for v in raw.values()), key=lambda r: r.name)

    def held(self, token: str) -> Grant | None:
        """`authenticate`'s answer if this process holds it now (`KnownGrants`), with no
        round trip; None if it does not (ask `authenticate`)."""
        if self.known is None or not token.startswith(TOKEN_PREFIX):
            return None
        return self.known.get(token_hash(token))

    async def authenticate(self, token: str) -> Grant | None:
        """The reader this token belongs to, if it is valid: one `HGET`."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        hashed = token_hash(token)
        return await self._grant(hashed, self.tokens_key, hashed)

    async def _grant(self, known_as: str, key: str, field: str | None = None) -> Grant | None:
        """The grant in a hash's field or a string key; kept a moment if `known`."""
        if self.known is not None and (grant := self.known.get(known_as)) is not None:
            return grant
        generation = self.known.generation if self.known is not None else 0
        raw = await (self.client.get(key) if field is None else self.client.hget(key, field))
        if raw is None:
            return None  # not kept: a stranger's guesses would fill the memory
        grant = _decode(raw)
        if self.known is not None:
            self.known.put(known_as, grant, generation)
        return grant

    async def revoke(self, name: str) -> bool:
        """End every token and session of a reader at once; it stays listed, revoked."""
        reader = await self.get(name)
        if reader is None:
            return False
        record = msgspec.json.encode(reader)
        tokens = [h for h, r in (await self.client.hgetall(self.tokens_key)).items() if r == record]
        sessions = await self.client.smembers(reader_sessions_key(self.prefix, name))
        cluster = is_cluster(self.client)
        revoked = msgspec.structs.replace(reader, revoked=True)
        pipe = self.client.pipeline(transaction=not cluster)
        if tokens:
            pipe.hdel(self.tokens_key, *tokens)
        for key in sessions:
            pipe.delete(key)
        pipe.delete(reader_sessions_key(self.prefix, name))
        if cluster:
            # These keys are in several slots, and no transaction holds them: the
            # credentials go first and the mark last, so that a revoke cut short leaves
            # the reader unrevoked, and run again it finds what is left (a grant is a
            # copy of the reader: marking it revoked alone refuses nothing).
            # (A cluster pipeline refuses PUBLISH: these go one by one.)
            await pipe.execute()
            await self.client.hset(self.key, name, msgspec.json.encode(revoked))
            await self.client.publish(changes_channel(self.prefix), READERS)
            return True
        pipe.hset(self.key, name, msgspec.json.encode(revoked))
        pipe.publish(changes_channel(self.prefix), READERS)  # query processes forget grants
        await pipe.execute()
        if self.bell is not None:
            await self.bell.publish(changes_channel(self.prefix), READERS)
        return True

    async def sign_in_link(self, name: str) -> str:
        """A code that signs `name` in once, within `SIGNIN_S` (`dateline up` prints it)."""
        reader = await self.get(name)
        if reader is None or reader.revoked:
            raise ValueError(f"reader {name!r} is not registered, or revoked")
        code = secrets.token_urlsafe(32)
        await self.client.set(signin_key(self.prefix, token_hash(code)), name, ex=SIGNIN_S)
        return code

    async def redeem(self, code: str) -> Grant | None:
        """The reader a sign-in code was made for; the code works once."""
        name = await self.client.getdel(signin_key(self.prefix, token_hash(code)))
        if name is None:
            return None
        reader = await self.get(name.decode() if isinstance(name, bytes) else name)
        return None if reader is None or reader.revoked else reader

    async def open_session(self, reader: Grant) -> str:
        """A session id for a browser's cookie, valid `SESSION_S` or until revoked."""
        session = secrets.token_urlsafe(32)
        key = session_key(self.prefix, token_hash(session))
        members = reader_sessions_key(self.prefix, reader.name)
        cluster = is_cluster(self.client)
        pipe = self.client.pipeline(transaction=not cluster)
        pipe.sadd(members, key)
        pipe.expire(members, SESSION_S)
        if cluster:  # two slots, no transaction: listed before it exists, so a revoke finds it
            await pipe.execute()
            pipe = self.client.pipeline(transaction=False)
        pipe.set(key, msgspec.json.encode(reader), ex=SESSION_S)
        await pipe.execute()
        return session

    async def session(self, session: str) -> Grant | None:
        key = session_key(self.prefix, token_hash(session))
        return await self._grant(key, key)

    async def end_session(self, session: str) -> None:
        """Sign-out: at once on this process; others keep it a moment (`KnownGrants`)
        for a cookie its browser has just dropped."""
        key = session_key(self.prefix, token_hash(session))
        if self.known is not None:
            self.known.drop(key)
        await self.client.delete(key)
