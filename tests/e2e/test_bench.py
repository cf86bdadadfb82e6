"""The benchmark harness runs and writes its results (figures are not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_writes_json_and_markdown() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((ROOT / "bench" / "results" / "results.json").read_text())["rows"]
    cases = {r["case"] for r in rows}
    assert "raw XADD, overlapped pipelines, fsync always" in cases
    assert "Log.append_stream, fsync always" in cases
    assert "dateline deliver: fan-out, outbox, signed POST, state" in cases
    assert any(c.startswith("dateline migrate: one server") for c in cases)
    assert all(r["value"] > 0 for r in rows)
    assert "| log append |" in (ROOT / "bench" / "results" / "results.md").read_text()
