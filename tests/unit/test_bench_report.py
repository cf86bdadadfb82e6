"""The bench's results say first when the services' code changed while it ran."""

from __future__ import annotations

import json
from pathlib import Path

from bench.harness import Report, Row


def _report() -> Report:
    report = Report()
    report.rows.append(Row("projection", "fold alone", 200_000.0, "updates/s"))
    return report


def test_results_written_while_the_code_changed_say_so_before_any_figure(tmp_path: Path) -> None:
    report = _report()
    report.code_changed = ["/src/dateline_schemas/_base.py"]
    json_path, md_path = report.write(tmp_path)

    lines = md_path.read_text().splitlines()
    assert lines[2].startswith("**The services' code changed during this run**")
    assert "/src/dateline_schemas/_base.py" in lines[2]
    assert lines.index("| benchmark | case | value | unit | ratio | against | note |") > 2
    assert json.loads(json_path.read_text())["meta"]["code_changed"] == (
        "/src/dateline_schemas/_base.py"
    )


def test_results_of_one_version_carry_no_such_line(tmp_path: Path) -> None:
    json_path, md_path = _report().write(tmp_path)

    assert "changed" not in md_path.read_text()
    assert "code_changed" not in json.loads(json_path.read_text())["meta"]
