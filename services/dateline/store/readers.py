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
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from dateline.store.layout import (
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


class Readers:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix
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

    async def authenticate(self, token: str) -> Grant | None:
        """The reader this token belongs to, if it is valid: one `HGET`."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        raw = await self.client.hget(self.tokens_key, token_hash(token))
        return None if raw is None else _decode(raw)

    async def revoke(self, name: str) -> bool:
        """End every token and session of a reader at once; it stays listed, revoked."""
        reader = await self.get(name)
        if reader is None:
            return False
        record = msgspec.json.encode(reader)
        tokens = [h for h, r in (await self.client.hgetall(self.tokens_key)).items() if r == record]
        sessions = await self.client.smembers(reader_sessions_key(self.prefix, name))
        pipe = self.client.pipeline(transaction=True)
        if tokens:
            pipe.hdel(self.tokens_key, *tokens)
        for key in sessions:
            pipe.delete(key)
        pipe.delete(reader_sessions_key(self.prefix, name))
        revoked = msgspec.structs.replace(reader, revoked=True)
        pipe.hset(self.key, name, msgspec.json.encode(revoked))
        await pipe.execute()
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
        pipe = self.client.pipeline(transaction=True)
        pipe.set(key, msgspec.json.encode(reader), ex=SESSION_S)
        pipe.sadd(members, key)
        pipe.expire(members, SESSION_S)
        await pipe.execute()
        return session

    async def session(self, session: str) -> Grant | None:
        raw = await self.client.get(session_key(self.prefix, token_hash(session)))
        return None if raw is None else _decode(raw)

    async def end_session(self, session: str) -> None:
        await self.client.delete(session_key(self.prefix, token_hash(session)))
