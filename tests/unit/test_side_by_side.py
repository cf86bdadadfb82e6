"""Steps sent side by side go through `store/together` (`gathered`, `side_by_side`),
never a bare `asyncio.gather`: that raises the first failure with the other writes still
landing, and its caller then retries, parks or answers beside them (a redrive that sent
an update twice, seen in CI); and of reads, it marks a second failure retrieved without a
word, so no log ever shows it."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services" / "dateline"


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


def test_no_step_goes_side_by_side_on_a_bare_gather() -> None:
    bare = [
        f"{path.relative_to(SERVICES)}: {at}"
        for path in sorted(SERVICES.rglob("*.py"))
        for at in _bare_gathers(path.read_text())
    ]
    assert bare == [], "steps side by side go through store.together"


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
