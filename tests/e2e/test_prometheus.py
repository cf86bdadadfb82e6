"""A real Prometheus (Debian's) scrapes a real query service, ingest and projector with
deploy/prometheus/alerts.yml loaded: every rule evaluates against what the services
export, a healthy system raises no alert, a parked update raises
`DatelineUpdatesParked`, a projector stopped `DatelineServiceDown` for it, and a server
near its maxmemory the two memory alerts, each at its own threshold."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml  # type: ignore[import-untyped]  # no stubs in the lock; a test's only use

from tests.e2e.processes import DATELINE, free_port, http_service
from tests.e2e.test_ops import HANOI, env, run, wait_for  # noqa: F401 - env is a fixture

ROOT = Path(__file__).parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
ABSENT_HERE = {
    "dateline_partitions_polled": "a runner on a cluster's only",
    "dateline_delivery_lag_seconds": "a subscription's, and none exists here",
    "dateline_delivery_parked_updates": "a subscription's, and none exists here",
}
"""Series the alerts watch that this system does not export, and why."""


ALERTS = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def watched() -> set[str]:
    """Every series name an alert's expression reads."""
    return set(re.findall(r"\b(dateline_[a-z_]+)", " ".join(rule["expr"] for rule in ALERTS)))


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], str]]:
    """`start(jobs)`: Debian's Prometheus on a loopback port, scraping and evaluating
    every second; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("no prometheus: install Debian's prometheus package (dev.py test does)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(jobs: dict[str, Any]) -> str:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": name, **job} for name, job in jobs.items()],
        }
        (tmp_path / "prometheus.yml").write_text(json.dumps(config))
        port = free_port()
        with (tmp_path / "prometheus.log").open("ab") as logs:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=logs,
                stderr=logs,
            )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: ready(base), "Prometheus to be ready")
        return base

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def api(base: str, path: str, **params: str) -> Any:
    answer = httpx.get(f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=5)
    answer.raise_for_status()
    return answer.json()["data"]


def alerts(base: str) -> list[tuple[str, dict[str, str], str]]:
    """The active alerts, pending or firing: (name, labels, state)."""
    return [
        (a["labels"]["alertname"], a["labels"], a["state"]) for a in api(base, "alerts")["alerts"]
    ]


def test_the_alert_rules_evaluate_against_the_running_services_and_fire_on_their_faults(
    env: dict[str, str],  # noqa: F811 - the fixture
    prometheus: Callable[[dict[str, Any]], str],
    tmp_path: Path,
) -> None:
    feed = run(env, "feeds", "add", "wire-a", "--source", "urn:feed:wire-a").stdout.strip()
    token = run(env, "readers", "add", "prometheus", "--role", "ops").stdout.strip()
    (tmp_path / "ops.token").write_text(token)
    probe = free_port()
    projector = subprocess.Popen(
        [str(DATELINE), "projector", "--probe-port", str(probe)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        with (
            http_service("query", env, tmp_path / "query.log") as query,
            http_service("ingest", env, tmp_path / "ingest.log") as ingest,
        ):
            ndjson = {"authorization": f"Bearer {feed}", "content-type": "application/x-ndjson"}
            sent = httpx.post(f"{ingest}/v1/updates", content=HANOI.read_bytes(), headers=ndjson)
            assert sent.status_code == 202, sent.text
            refused = httpx.post(f"{ingest}/v1/updates", content=b"{}\n", headers=ndjson)
            assert refused.status_code == 422, refused.text
            run(env, "backup", str(tmp_path / "nightly.ndjson.gz"))  # a healthy one has one
            scraped_with_token = {
                "authorization": {"credentials_file": str(tmp_path / "ops.token")}
            }
            base = prometheus(
                {
                    "dateline-query": {
                        **scraped_with_token,
                        "static_configs": [{"targets": [query.removeprefix("http://")]}],
                    },
                    "dateline-ingest": {
                        **scraped_with_token,
                        "static_configs": [{"targets": [ingest.removeprefix("http://")]}],
                    },
                    "dateline-projector": {
                        "static_configs": [{"targets": [f"127.0.0.1:{probe}"]}],
                    },
                }
            )

            def scraped() -> bool:
                up = api(base, "query", query="up")["result"]
                return len(up) == 3 and all(r["value"][1] == "1" for r in up)

            wait_for(scraped, "the services scraped (query and ingest with the ops token)")

            def evaluated() -> list[dict[str, Any]]:
                return [
                    rule
                    for group in api(base, "rules")["groups"]
                    for rule in group["rules"]
                    if rule["lastEvaluation"] > "2000"
                ]

            wait_for(lambda: len(evaluated()) == len(ALERTS), "every rule evaluated")
            time.sleep(3)  # a few evaluations over the series scraped since
            for rule in evaluated():
                assert rule["health"] == "ok", rule
            assert alerts(base) == []  # a healthy system, caught up: nothing to page about
            when = 'dateline_backup_last_timestamp_seconds{job="dateline-query"}'
            [backed_up] = api(base, "query", query=when)["result"]
            assert time.time() - float(backed_up["value"][1]) < 300
            # What DatelineFeedRefused counts, as ingest exports it.
            invalid = 'dateline_updates_total{service="ingest", outcome="invalid"}'
            assert api(base, "query", query=invalid)["result"][0]["value"][1] == "1"

            assert ABSENT_HERE.keys() <= watched()
            for name in watched():
                found = api(base, "query", query=f"count({{__name__={name!r}}})")["result"]
                if name in ABSENT_HERE:
                    assert not found, f"{name} is scraped here: drop it from ABSENT_HERE"
                else:
                    assert found, f"the alerts watch {name}, which neither service exports"

            # An entry written around the append function (a raw XADD) names a story
            # and is no update: the projector parks it, and the query's /metrics says so.
            stream = next(
                f"ops:{{p{p}}}:log"
                for p in range(8)
                if client.lrange(f"ops:{{p{p}}}:story:hanoi-summit-2019", 0, 0)
            )
            client.xadd(stream, {"__data__": json.dumps({"subject": "hanoi-summit-2019"})})
            wait_for(
                lambda: [a[0] for a in alerts(base)] == ["DatelineUpdatesParked"],
                "DatelineUpdatesParked, and it alone",
                timeout=45,
            )
            [(_, labels, state)] = alerts(base)
            assert labels["severity"] == "critical"
            assert state == "pending"  # its `for:` is a minute

            projector.terminate()
            assert projector.wait(timeout=30) == 0

            def projector_down() -> bool:
                return any(
                    name == "DatelineServiceDown" and labels["job"] == "dateline-projector"
                    for name, labels, _ in alerts(base)
                )

            wait_for(projector_down, "DatelineServiceDown for the projector", timeout=45)
            assert {name for name, _, _ in alerts(base)} == {
                "DatelineServiceDown",
                "DatelineUpdatesParked",
            }

            # The server's maxmemory set over what it uses, as the query service reads
            # both from the server at each scrape: filling at 88%, full at 98%.
            server = urllib.parse.urlsplit(env["REDIS_URL"]).netloc.rpartition("@")[2]

            def memory_alerts() -> dict[str, str]:
                return {
                    name: labels["server"]
                    for name, labels, _ in alerts(base)
                    if name.startswith("DatelineServerMemory")
                }

            client.config_set("maxmemory", int(client.info("memory")["used_memory"] / 0.88))
            wait_for(memory_alerts, "the server's memory filling", timeout=45)
            time.sleep(3)  # a few evaluations more
            assert memory_alerts() == {"DatelineServerMemoryFilling": server}
            client.config_set("maxmemory", int(client.info("memory")["used_memory"] / 0.98))
            wait_for(lambda: len(memory_alerts()) == 2, "the server's memory full", timeout=45)
            assert memory_alerts() == {
                "DatelineServerMemoryFilling": server,
                "DatelineServerMemoryFull": server,
            }
    finally:
        client.config_set("maxmemory", 0)
        client.close()
        if projector.poll() is None:
            projector.terminate()
            projector.wait(timeout=30)
