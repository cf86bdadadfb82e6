"""The server-side scripts, one `.lua` file each, and the one loader that reads them.

Every script opens with a header of `--` lines that says what it does, its KEYS, its
ARGV and its reply. A script that shares a function with another says so on a line
`-- include: NAME.lua` of its own; `load` puts that file's text there, once. Scripts
read JSON with `cjson`, which every Redis and Valkey since 2.6 carries, never with
patterns.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError
from redis.typing import EncodableT, KeyT

_INCLUDE = re.compile(r"^-- include: ([a-z_]+\.lua)$", re.MULTILINE)


@functools.cache
def load(name: str) -> str:
    """The text of `NAME.lua`, its includes in place."""
    text = resources.files(__name__).joinpath(f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: load(m[1].removesuffix(".lua")).rstrip("\n"), text)


class Script:
    """A script called by its digest (`EVALSHA`) and, where the server does not hold it
    (restarted, flushed, failed over), by its text (`EVAL`), which loads and runs it in
    one command.

    redis-py's own script object loads it (`SCRIPT LOAD`) and then calls it again: two
    commands, and a server that restarted between them answers the second `NOSCRIPT`
    too. A chaos run's disk-full fault restarted the server three times in 2 s, and a
    feed's append was answered 500 for it. Either way nothing ran: `NOSCRIPT` is
    answered before a script runs.
    """

    __slots__ = ("client", "sha", "text")

    def __init__(self, client: aioredis.Redis, text: str) -> None:
        self.client, self.text = client, text
        # The server's name for it: a digest, not a secret.
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[KeyT] = (), args: Sequence[EncodableT] = ()) -> Any:
        try:
            return await self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.eval(self.text, len(keys), *keys, *args)


def bound(client: aioredis.Redis, name: str) -> Script:
    """`NAME.lua` (`load`), to be called on `client`."""
    return Script(client, load(name))


def names() -> list[str]:
    """Every script this package holds (the ones others include too)."""
    return sorted(
        p.name.removesuffix(".lua")
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".lua")
    )


@dataclass(frozen=True, slots=True)
class Library:
    """Scripts as one function library (Redis 7+, Valkey), every function read-only.

    Its name and each function's carry a digest of the code, so a new release loads a
    library of its own beside the old one, which the processes not yet restarted still
    call; nothing is replaced under them.
    """

    name: str
    code: str
    functions: dict[str, str]
    """script name -> function name"""


@functools.cache
def library(*scripts: str) -> Library:
    """The function library of `scripts`, each script's body as a `no-writes` function.

    A script's body reads KEYS and ARGV as globals; as a function's it gets them as its
    two parameters under the same names, so its text runs unchanged.
    """
    bodies = {name: load(name) for name in scripts}
    digest = hashlib.sha256("\0".join(f"{k}\0{v}" for k, v in bodies.items()).encode())
    tag = digest.hexdigest()[:12]
    lines = [f"#!lua name=dateline_{tag}"]
    functions = {}
    for name, body in bodies.items():
        functions[name] = f"dateline_{name}_{tag}"
        lines += [
            "redis.register_function{",
            f"  function_name = '{functions[name]}',",
            "  flags = {'no-writes'},",
            "  callback = function(KEYS, ARGV)",
            body.rstrip("\n"),
            "  end}",
        ]
    return Library(f"dateline_{tag}", "\n".join(lines) + "\n", functions)
