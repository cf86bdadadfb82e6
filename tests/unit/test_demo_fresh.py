"""`dateline demo --fresh`: a data directory of its own, gone when the demo stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dateline.cli import demo
from dateline.cli.main import cli


def test_fresh_runs_in_a_directory_of_its_own_removed_after(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[tuple[Path, bool]] = []

    def run(cfg: Any, *_: object) -> None:
        seen.append((cfg.data_dir, cfg.data_dir.is_dir()))

    monkeypatch.setattr(demo, "_run", run)
    for name in ("REDIS_URL", "DATELINE_VIEWS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATELINE_DATA_DIR", str(tmp_path / "kept"))
    assert CliRunner().invoke(cli, ["demo", "--fresh"]).exit_code == 0
    assert CliRunner().invoke(cli, ["demo"]).exit_code == 0
    [(fresh, existed), (kept, _)] = seen
    assert existed and not fresh.exists() and fresh.name.startswith("dateline-demo-")
    assert kept == tmp_path / "kept"


@pytest.mark.parametrize("name", ["REDIS_URL", "DATELINE_VIEWS_URL"])
def test_fresh_is_refused_on_a_server_it_did_not_start(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(demo, "_run", lambda *_: pytest.fail("ran"))
    monkeypatch.setenv(name, "redis://127.0.0.1:1/0")
    refused = CliRunner().invoke(cli, ["demo", "--fresh"])
    assert refused.exit_code == 2
    assert "unset REDIS_URL and DATELINE_VIEWS_URL" in refused.output
