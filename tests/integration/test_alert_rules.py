"""deploy/prometheus/ under Prometheus' own checker: the scrape config and the rules
load, and each alert fires on the series it watches, after its `for:`, and not on its
neighbours' (`promtool test rules alerts_test.yml`). promtool is Debian's `prometheus`
package, which `python3 dev.py test` installs where it can."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS = Path(__file__).parents[2] / "deploy" / "prometheus"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("no promtool: install Debian's prometheus package (python3 dev.py test does)")
    return subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_scrape_config_and_its_rules_load(tmp_path: Path) -> None:
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    (tmp_path / "dateline-ops.token").write_text("an ops reader's token\n")
    checked = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = len(re.findall(r"- alert: ", (PROMETHEUS / "alerts.yml").read_text()))
    assert f"SUCCESS: {rules} rules found" in checked.stdout


def test_each_alert_fires_on_what_it_watches_and_not_before_its_for() -> None:
    tested = promtool("test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_test_that_sees_it_fire() -> None:
    rules = (PROMETHEUS / "alerts.yml").read_text()
    tests = (PROMETHEUS / "alerts_test.yml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", rules))
    # A case that expects it to fire names it and then lists an alert under exp_alerts.
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests))
    assert alerts == fired, alerts ^ fired
