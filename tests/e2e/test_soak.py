"""The soak harness runs the whole system and writes its table and picture (a short run;
`python3 dev.py soak --minutes 30` is the real one, its figures in the issue's note)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # 24 s on a slow VM: a test of the harness, not of a guarantee
def test_a_short_soak_writes_its_table_and_picture(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--minutes",
            "0.3",
            "--rate",
            "100",
            "--workdir",
            str(tmp_path / "logs"),
            "--out",
            str(tmp_path),
            "--set",
            "DATELINE_PROJECTOR_WARM_MB=8",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "soak.md").read_text()
    rows = [x for x in table.splitlines() if x.startswith("| 0.")]
    assert rows, table
    assert " 0 failed requests" in table
    assert "Settings: `DATELINE_PROJECTOR_WARM_MB=8`." in table
    assert (tmp_path / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
