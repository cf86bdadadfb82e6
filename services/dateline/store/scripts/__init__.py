"""The server-side scripts, one `.lua` file each, and the one loader that reads them.

Every script opens with a header of `--` lines that says what it does, its KEYS, its
ARGV and its reply. A script that shares a function with another says so on a line
`-- include: NAME.lua` of its own; `load` puts that file's text there, once. Scripts
read JSON with `cjson`, which every Redis and Valkey since 2.6 carries, never with
patterns.
"""

from __future__ import annotations

import functools
import re
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
