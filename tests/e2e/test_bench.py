"""The benchmark harness runs and writes its results (figures are not asserted here).

In the slow group: a quick run of every benchmark takes four to five minutes (the
instruction counts, under valgrind where it is installed, 40 s of them), and `.ci/run` runs
the group after the default suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)  # the run's own bound below: it took 4.5 to 5 minutes of 300
def test_bench_quick_writes_json_and_markdown(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    cases = {r["case"] for r in rows}
    assert "raw XADD, overlapped pipelines, fsync always" in cases
    assert "Log.append_stream, fsync always" in cases
    assert "a retry of the load, every update a duplicate, compared with its original" in cases
    assert "dateline deliver: fan-out, outbox, signed POST, state" in cases
    assert any(c.startswith("dateline migrate: one server") for c in cases)
    assert any(c.startswith("dateline backup: one server") for c in cases)
    assert any(c.startswith("dateline restore: the file checked") for c in cases)
    assert "projector on a cluster, 300 updates/s: CPU an update, waiting for rings" in cases
    assert any(c.startswith("the lag of 8,000 updates waiting") for c in cases)
    if len(os.sched_getaffinity(0)) >= 2:  # what a wake costs, across two cores against one
        assert "CPU a round trip between two processes on two cores (two wakes)" in cases
    assert all(r["value"] > 0 for r in rows)
    assert "| log append |" in (tmp_path / "results.md").read_text()
