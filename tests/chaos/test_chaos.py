"""A short seeded chaos run in the default suite: faults of every kind against the whole
system, and the checker's verdict (`python3 dev.py chaos` runs it longer)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.chaos.harness import report, run

SECONDS, SEED = 60, 20190228


def test_a_seeded_run_loses_nothing_acknowledged(tmp_path: Path) -> None:
    result = asyncio.run(run(SECONDS, SEED, tmp_path))
    print(report(result))
    assert result.faults, "the run must inject faults"
    assert result.acknowledged > 100
    assert result.ok, report(result)
