"""A short seeded chaos run (in the slow group): faults of every kind against the whole
system, and the checker's verdict (`python3 dev.py chaos` runs it longer)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.chaos.harness import report, run

pytestmark = pytest.mark.slow  # 90 s: `.ci/run` runs it after the default suite

SECONDS, SEED = 60, 20190228


def test_a_seeded_run_loses_nothing_acknowledged(tmp_path: Path) -> None:
    result = asyncio.run(run(SECONDS, SEED, tmp_path))
    print(report(result))
    assert result.faults, "the run must inject faults"
    assert result.acknowledged > 100
    assert result.ok, report(result)
