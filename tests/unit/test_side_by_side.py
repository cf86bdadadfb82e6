"""Writes sent side by side go through `store/together.gathered`, never a bare
`asyncio.gather`: that raises the first failure with the other writes still landing,
and its caller then retries, parks or answers beside them (a redrive that sent an
update twice, seen in CI). A bare `gather` is kept for reads alone, named here."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services" / "dateline"

READS = {
    "projector/handler.py: ProjectorHandler._recall",  # the stories' states
    "query/reader.py: Reader._read",  # a story, whether it is parked, its records
    "query/reader.py: Reader.listed",  # the newest, the parked, the overdue
    "query/reader.py: Reader._applied_in_two",  # the checkpoints, the entries up to them
    "query/routes/stories.py: _listing",  # a page of stories, the next one due
}


def _bare_gathers(source: str) -> list[str]:
    """Where `source` calls `asyncio.gather` without `return_exceptions` (which collects
    every failure, as `gathered` does): the class and function it is in."""
    found: list[str] = []

    def visit(node: ast.AST, where: tuple[str, ...]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, (*where, child.name))
                continue
            if (
                isinstance(child, ast.Call)
                and ast.unparse(child.func) == "asyncio.gather"
                and not any(k.arg == "return_exceptions" for k in child.keywords)
            ):
                found.append(".".join(where) or f"line {child.lineno}")
            visit(child, where)

    visit(ast.parse(source), ())
    return found


def test_only_reads_go_side_by_side_on_a_bare_gather() -> None:
    bare = {
        f"{path.relative_to(SERVICES)}: {at}"
        for path in sorted(SERVICES.rglob("*.py"))
        for at in _bare_gathers(path.read_text())
    }
    assert bare - READS == set(), "writes side by side go through store.together.gathered"
    assert READS - bare == set(), "named here as reads, but no bare gather is there now"


def test_the_rule_sees_a_bare_gather_and_passes_one_that_collects() -> None:
    source = (
        "import asyncio\n"
        "class Writer:\n"
        "    async def write(self):\n"
        "        await asyncio.gather(a(), b())\n"
        "        await asyncio.gather(a(), return_exceptions=True)\n"
        "async def other():\n"
        "    return await gathered(a(), b())\n"
    )
    assert _bare_gathers(source) == ["Writer.write"]
