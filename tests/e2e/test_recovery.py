"""`dateline up`, feeds publishing over HTTP with retries, and a SIGKILL of one of its
embedded servers: the server comes back on its port from its AOF, no service restarts,
ingest answered 503 (never 500) meanwhile, and every acknowledged update is in the log
once and in the read models once.

Killed, the log's server (`appendfsync always`) loses nothing it answered; the read
models' (`everysec`) may lose its last second, which the projector finds missing and
applies again from the log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from dateline.store.embedded import EmbeddedRedis
from tests.e2e.processes import DATELINE, free_port
from tests.e2e.test_demo import wait_for
from tests.factories import encode, update

STORIES, PER_STORY = 10, 40


def publisher(
    base: str, token: str, updates: list[bytes], acked: list[str], answers: list[int]
) -> None:
    """Each update until it is acknowledged, again with the same id after a 503."""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/cloudevents+json"}
    with httpx.Client(timeout=10) as http:
        for body in updates:
            while True:
                try:
                    r = http.post(f"{base}/v1/updates", content=body, headers=headers)
                except httpx.HTTPError:
                    answers.append(0)
                    time.sleep(0.2)
                    continue
                answers.append(r.status_code)
                if r.status_code in (200, 202):
                    acked.append(json.loads(body)["id"])
                    break
                assert r.status_code == 503, r.text
                time.sleep(float(r.headers.get("retry-after", "1")))
            time.sleep(0.005)


def test_up_survives_a_killed_server_and_loses_nothing(tmp_path: Path) -> None:
    killed_and_recovered(tmp_path, Path("redis.pid"), "redis")


def test_up_survives_a_killed_store_of_read_models_and_applies_each_update_once(
    tmp_path: Path,
) -> None:
    killed_and_recovered(tmp_path, Path("views") / "redis.pid", "views")


def killed_and_recovered(tmp_path: Path, pid_file: Path, name: str) -> None:
    """`dateline up` under a feed, the server of `pid_file` (under the data dir) killed
    mid-stream; every story then reads as its history folds, with each update once."""
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATELINE_PREFIX")}
    env |= {"DATELINE_DATA_DIR": str(data_dir), "DATELINE_LEASE_TTL_MS": "1000"}
    port, ingest_port = free_port(), free_port()
    out = tmp_path / "up.out"
    with out.open("wb") as sink:
        up = subprocess.Popen(
            [str(DATELINE), "up", "--port", str(port), "--ingest-port", str(ingest_port)],
            env=env,
            stdout=sink,
            stderr=sink,
        )
    query, ingest = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ingest_port}"
    try:
        wait_for("the query service", lambda: httpx.get(f"{query}/readyz").status_code == 200)
        wait_for("ingest", lambda: httpx.get(f"{ingest}/readyz").status_code == 200)
        token = subprocess.run(
            [str(DATELINE), "feeds", "add", "wire", "--source", "urn:feed:test"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        reading = {
            "authorization": "Bearer "
            + subprocess.run(
                [str(DATELINE), "readers", "add", "on-call", "--role", "ops"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        }
        updates = [
            encode(
                update(
                    "dateline.statement.made",
                    subject=f"story-{n % STORIES}",
                    id=f"u{n}",
                    data={"statement": f"s{n}", "speaker": "Kim Jong Un", "text": f"said {n}"},
                )
            )
            for n in range(STORIES * PER_STORY)
        ]
        acked: list[str] = []
        answers: list[int] = []
        feed = threading.Thread(target=publisher, args=(ingest, token, updates, acked, answers))
        feed.start()
        wait_for("some updates in", lambda: len(acked) >= 100)
        pid = int((data_dir / pid_file).read_text())
        os.kill(pid, signal.SIGKILL)
        killed_at = len(acked)
        feed.join(timeout=120)
        assert not feed.is_alive()
        assert killed_at < len(updates)  # the kill landed mid-stream
        # Every acknowledged update, once, in the read models.
        wait_for(
            "the read models to catch up",
            lambda: (
                {
                    e["id"]: e["version"]
                    for e in httpx.get(f"{query}/v1/stories", headers=reading).json()["items"]
                }
                == {f"story-{s}": PER_STORY for s in range(STORIES)}
            ),
        )
        assert sorted(acked) == sorted(json.loads(u)["id"] for u in updates)
        assert 500 not in answers
        for s in range(STORIES):  # each update applied once: as many timeline lines
            timeline = httpx.get(f"{query}/v1/stories/story-{s}/timeline", headers=reading)
            assert len(timeline.json()["items"]) == PER_STORY
            read = httpx.get(f"{query}/v1/stories/story-{s}", headers=reading).json()
            folded = subprocess.run(
                [str(DATELINE), "story", f"story-{s}", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            assert read == json.loads(folded.stdout)
        # The on-call tools work on the same data dir while `up` holds it.
        status = subprocess.run(
            [str(DATELINE), "status", "--json"], env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(status.stdout)["dead_letters"]["parked_updates"] == 0
        logged = subprocess.run(
            [str(DATELINE), "log", "story-0", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        assert [json.loads(x)["version"] for x in logged] == list(range(1, PER_STORY + 1))
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    said = out.read_text()
    assert f"{name} exited with signal SIGKILL; restarting it on port" in said
    assert f"{name} is back after" in said
    assert "exited with" not in said.replace(f"{name} exited with", "")  # no service died


def test_services_started_before_their_server_wait_for_it_then_serve(tmp_path: Path) -> None:
    """Each of the five services, started while nothing answers at REDIS_URL (a server
    restarting, a failover, a deployment's order), waits for it, one log line a try,
    and serves once it answers; none exits. (Until 2026-12-06 each exited at once, and
    waited on its supervisor's backoff.)"""
    port, query_port, ingest_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATELINE_PREFIX"}
    env |= {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "DATELINE_DATA_DIR": str(tmp_path)}
    commands = {
        "projector": ["projector"],
        "validator": ["validator"],
        "deliver": ["deliver"],
        "query": ["query", "--port", str(query_port)],
        "ingest": ["ingest", "--port", str(ingest_port)],
    }
    logs = {name: tmp_path / f"{name}.log" for name in commands}
    procs = {
        name: subprocess.Popen(
            [str(DATELINE), *args], env=env, stdout=logs[name].open("wb"), stderr=subprocess.STDOUT
        )
        for name, args in commands.items()
    }
    server = EmbeddedRedis(tmp_path / "server", fsync="everysec", port=port)
    try:
        for name in commands:
            wait_for(f"{name} waiting", lambda n=name: "cannot be reached" in logs[n].read_text())
        assert all(p.poll() is None for p in procs.values()), {
            n: p.poll() for n, p in procs.items()
        }
        (tmp_path / "server").mkdir()
        server.start()
        for base in (f"http://127.0.0.1:{query_port}", f"http://127.0.0.1:{ingest_port}"):
            wait_for(base, lambda b=base: _ready(b))
        started = {
            "projector": "partition taken",
            "validator": "consumer started",
            "deliver": "deliver: delivering to",
        }
        for name, line in started.items():
            wait_for(f"{name} started", lambda n=name, x=line: x in logs[n].read_text())
        assert all(p.poll() is None for p in procs.values()), {
            n: p.poll() for n, p in procs.items()
        }
        said = logs["projector"].read_text()
        assert "the log's server cannot be reached; waiting for it" in said
        assert f'"server": "127.0.0.1:{port}"' in said
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=30)
        server.stop()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
