"""deploy/prometheus/ and docs/runbook.md agree with the code: every alert watches
metrics and labels the services export, links a section of the runbook that exists,
and the runbook's commands, metrics and settings are real ones. (promtool checks the
rules' logic: tests/integration/test_alert_rules.py; a real Prometheus evaluates them
against the running services: tests/e2e/test_prometheus.py.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock; a test's only use
from prometheus_client.metrics import MetricWrapperBase

from dateline.cli.main import cli
from dateline.runtime import metrics

ROOT = Path(__file__).parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES: list[dict[str, Any]] = [
    rule
    for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    for rule in group["rules"]
]
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
SCRAPED = {"job", "instance"}
"""Labels Prometheus adds to every series it scrapes."""


SUFFIXES = {"counter": ["_total"], "histogram": ["_count", "_sum"], "gauge": [""]}
"""The series a family of each type is scraped as (a histogram's `_bucket` too)."""


def exported() -> dict[str, set[str]]:
    """Every series name the services export (a counter's `_total`, a histogram's
    `_count`, ...), with its labels; and Prometheus' own `up`."""
    names: dict[str, set[str]] = {"up": set()}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        [family] = metric.describe()
        # The label names a family was made with: prometheus_client keeps no public list.
        labels = set(metric._labelnames)
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = labels
        if family.type == "histogram":
            names[family.name + "_bucket"] = labels | {"le"}
    return names


EXPORTED = exported()


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """Each series an expression selects, with the labels its matchers name."""
    found = []
    for m in re.finditer(r"\b(up|dateline_[a-z_]+)\b(\{([^}]*)\})?", expr):
        matchers = m[3] or ""
        found.append((m[1], set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))))
    return found


def test_the_rules_are_what_the_runbook_has_a_section_for() -> None:
    alerts = [rule["alert"] for rule in RULES]
    assert len(set(alerts)) == len(alerts), alerts
    sections = re.findall(r"^## (Dateline\w+)$", RUNBOOK, flags=re.MULTILINE)
    assert sorted(sections) == sorted(alerts)
    for rule in RULES:
        assert rule["annotations"]["runbook"] == f"docs/runbook.md#{rule['alert'].lower()}"
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["alert"])
def test_each_alert_watches_series_and_labels_the_services_export(rule: dict[str, Any]) -> None:
    expr = rule["expr"]
    chosen = selectors(expr)
    assert chosen, expr
    for name, labels in chosen:
        assert name in EXPORTED, f"{rule['alert']}: no service exports {name}"
        unknown = labels - EXPORTED[name] - SCRAPED
        assert not unknown, f"{rule['alert']}: {name} has no label {unknown}"
    every = set().union(*(EXPORTED[name] for name, _ in chosen)) | SCRAPED
    for grouped in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        for label in (g.strip() for g in grouped.split(",")):
            assert label in every, f"{rule['alert']}: by ({label}) names no label it has"
    summary = rule["annotations"]["summary"]
    for label in re.findall(r"\$labels\.(\w+)", summary):
        assert label in every, f"{rule['alert']}: its summary names {label}"


def test_the_scrape_config_names_the_jobs_the_alerts_expect_at_composes_ports() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    services = ["query", "ingest", "projector", "validator", "deliver"]
    assert sorted(jobs) == sorted(f"dateline-{s}" for s in services)
    for service in services:
        job = jobs[f"dateline-{service}"]
        [target] = job["static_configs"][0]["targets"]
        host, port = target.split(":")
        command = compose[service]["command"]
        flag = "--port" if "--port" in command else "--probe-port"
        assert (host, port) == (service, command[command.index(flag) + 1]), service
        # The HTTP services' /metrics want an ops reader's bearer; the probes want none.
        assert ("authorization" in job) == (service in ("query", "ingest")), service
    ignored = (PROMETHEUS / ".gitignore").read_text().split()
    for job in jobs.values():
        if "authorization" in job:
            assert job["authorization"]["credentials_file"] in ignored


def commands(text: str) -> list[list[str]]:
    """Every `dateline ...` command the text quotes in backticks."""
    return [shlex.split(m) for m in re.findall(r"`(dateline [^`]+)`", text.replace("\n", " "))]


def test_every_command_the_runbook_quotes_is_a_real_command_with_real_options() -> None:
    quoted = commands(RUNBOOK)
    assert len(quoted) > 10
    for words in quoted:
        command: click.Command = cli
        rest = words[1:]
        while isinstance(command, click.Group) and rest:
            sub = command.get_command(click.Context(command), rest[0])
            if sub is None:
                break
            command, rest = sub, rest[1:]
        assert command is not cli, words
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        flags = [w for w in rest if w.startswith("--")]
        assert set(flags) <= options, f"{' '.join(words)}: {set(flags) - options}"
        if isinstance(command, click.Group):
            assert not rest, f"{' '.join(words)}: {rest[0]} is not a command of it"
        else:
            values = [w for w in rest if not w.startswith("--") and w.isupper()]
            assert len(values) <= len(arguments) + len(flags), words


def test_the_runbook_names_real_metrics_and_settings() -> None:
    metrics = set(re.findall(r"`(dateline_[a-z_]+)", RUNBOOK))
    assert metrics
    for name in metrics:
        assert any(n == name or n.startswith(name + "_") for n in EXPORTED), name
    settings = set(re.findall(r"DATELINE_[A-Z_]+", RUNBOOK))
    known = (ROOT / "README.md").read_text() + (ROOT / "docker-compose.yml").read_text()
    for name in settings:
        assert f"`{name}`" in known or f"{{{name}:-" in known, name


def test_compose_runs_this_prometheus_config_on_request_and_on_loopback() -> None:
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["prometheus"]
    assert service["profiles"] == ["monitoring"]  # `docker compose up` alone leaves it out
    mounted = dict(v.split(":", 2)[:2] for v in service["volumes"] if v.startswith("./"))
    assert mounted == {"./deploy/prometheus": "/etc/prometheus"}
    # Its rule file and token are read relative to the config, so from the same mount.
    assert "--config.file=/etc/prometheus/prometheus.yml" in service["command"]
    assert all(port.startswith("127.0.0.1:") for port in service["ports"])
