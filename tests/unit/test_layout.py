"""Every Redis key is spelled in one module, `store/layout.py`: no other module of the
services writes a key's name, in a string or an f-string."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services" / "dateline"
LAYOUT = SERVICES / "store" / "layout.py"
WORDS = (
    "rm|config|log|ids|story|lease|members|attempts|parked|dlq|feeds|tokens|inbox|rejected"
    "|checkpoint|index|by_time|statements|merge|timeline|speaker|schedule|by_start|shape"
    "|changes|replay|active|due|subs|sub|secrets|outbox|retries|stats"
)
# A key's segment: a colon right after text or a placeholder (not after a space, as in
# prose), then one of the names the layout gives a key; or a partition's hash tag.
KEY = re.compile(rf"(?:^|[^\s:]):(?:{WORDS})(?=$|[:*])|\{{p\d|\{{\{{p")


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the constant nodes that are docstrings (prose may name a key)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for stmt in body:
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    found.add(id(stmt.value))
    return found


def key_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string or f-string in `source` that spells a key."""
    tree = ast.parse(source)
    prose = _docstrings(tree)
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in prose or id(node) in parts:
                continue
            text = node.value
        else:
            continue
        if KEY.search(text):
            found.append((node.lineno, text))
    return sorted(found)


def test_the_check_finds_a_key_spelled_outside_the_layout() -> None:
    """The rule can fail: the spellings the services used before the layout are found."""
    source = """
def active(prefix):
    return f"{prefix}:rm:active"
LEASE = "{prefix}:{group}:lease:p0"
def log(prefix, p):
    return f"{prefix}:{{p{p}}}:log"
def inbox(stream):
    return stream.rsplit(":inbox:", 1)[1]
"""
    assert [line for line, _ in key_literals(source)] == [3, 4, 6, 8]


def test_prose_and_messages_are_not_keys() -> None:
    source = '''
"""<prefix>:rm:active holds the version."""
def f(story, n):
    """Reads <prefix>:rm:<v>:story:<id>."""
    return f"{story}: rebuilt to version {n}", "give as_of or at_version, not both"
'''
    assert key_literals(source) == []


@pytest.mark.parametrize(
    "path",
    sorted(p for p in SERVICES.rglob("*.py") if p != LAYOUT),
    ids=lambda p: str(p.relative_to(SERVICES)),
)
def test_no_key_is_spelled_outside_the_layout(path: Path) -> None:
    found = key_literals(path.read_text())
    assert not found, f"spell these keys in store/layout.py: {found}"


def test_the_layout_spells_the_keys() -> None:
    """The check reads the layout's own strings as keys: it would see one elsewhere."""
    assert len(key_literals(LAYOUT.read_text())) >= 20
