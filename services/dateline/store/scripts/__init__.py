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
from dataclasses import dataclass
from importlib import resources

_INCLUDE = re.compile(r"^-- include: ([a-z_]+\.lua)$", re.MULTILINE)


@functools.cache
def load(name: str) -> str:
    """The text of `NAME.lua`, its includes in place."""
    text = resources.files(__name__).joinpath(f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: load(m[1].removesuffix(".lua")).rstrip("\n"), text)


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
