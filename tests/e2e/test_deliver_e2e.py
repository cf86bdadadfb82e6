"""Deliveries between real processes: `dateline deliver`, a receiver process that fails
and recovers, and a delivery service SIGKILLed mid-stream."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from dateline.store.cluster import LocalCluster
from dateline.store.embedded import EmbeddedRedis
from tests.conftest import VALKEY, start_server
from tests.e2e.processes import DATELINE, free_port, receiver_process
from tests.factories import encode, update
from tests.projection_helpers import HANOI, HANOI_VERSION

HANOI_ONLY = HANOI_VERSION  # the Hanoi story's updates; the file has another story's too


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    redis = start_server(VALKEY, tmp_path / "redis")
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture(params=["server", pytest.param("cluster", marks=pytest.mark.slow)])
def anywhere(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A server's URL, and a local cluster's (3 masters with a replica each; 26 s on a
    slow VM, so in the slow group, which CI runs too)."""
    if request.param == "server":
        redis = start_server(VALKEY, tmp_path / "redis")
        try:
            yield redis.url
        finally:
            redis.stop()
        return
    with LocalCluster(tmp_path / "cluster", 3, 1, "everysec") as cluster:
        yield cluster.url


def env_for(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": url,
        "DATELINE_PREFIX": "e2e",
        "DATELINE_LEASE_TTL_MS": "1000",
    }


def dateline(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(DATELINE), *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode in (0, 1), done.stderr  # publish exits 1 on a refusal
    return done.stdout.strip()


def received(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # The receiver may be writing its last line now: only whole lines count.
    *whole, _partial = path.read_text().split("\n")
    return [json.loads(x) for x in whole if x.strip()]


def acknowledged(path: Path) -> list[dict[str, Any]]:
    return [r for r in received(path) if 200 <= r["answered"] < 300]


def wait_for(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not in {within:g} s: {what}")


def deliver(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [
                str(DATELINE),
                "deliver",
                "--timeout",
                "1s",
                "--first-backoff",
                "0.2s",
                "--max-backoff",
                "1s",
            ],
            env=env,
            stdout=out,
            stderr=out,
        )


def test_a_receiver_that_fails_times_out_and_recovers_gets_each_update_once_in_order(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    env = env_for(server.url)
    port = free_port()
    secret = dateline(
        env,
        "subscriptions",
        "add",
        f"http://127.0.0.1:{port}/hook",
        "--allow-private",
        "--story-prefix",
        "hanoi-",
        "--mode",
        "binary",
        "--name",
        "desk",
    )
    out = tmp_path / "received.ndjson"
    script = "500:3,hang:2,500:2,ok"  # 7 failures: three 500s, two timeouts, two more 500s
    with receiver_process(port, out, secret, tmp_path / "receiver.log", script):
        proc = deliver(env, tmp_path / "deliver.log")
        try:
            dateline(env, "publish", str(HANOI))
            wait_for(lambda: len(acknowledged(out)) >= HANOI_ONLY, 90, "every Hanoi update")
            time.sleep(0.5)  # anything sent twice would arrive now
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    requests, acks = received(out), acknowledged(out)
    assert len(acks) == HANOI_ONLY  # each once: nothing again after the receiver said 2xx
    assert len({r["headers"]["webhook-id"] for r in acks}) == HANOI_ONLY
    assert len(requests) == HANOI_ONLY + 7
    assert all(r["valid"] for r in requests)  # each attempt signed anew, and right
    versions = [int(r["headers"]["ce-version"]) for r in acks]
    assert versions == list(range(1, HANOI_ONLY + 1))  # the one story, in order
    assert {r["headers"]["ce-subject"] for r in requests} == {"hanoi-summit-2019"}
    # The retries carried the same message id as the first attempt.
    first = requests[0]["headers"]["webhook-id"]
    assert [r["headers"]["webhook-id"] for r in requests[:8]] == [first] * 8
    listed = json.loads(dateline(env, "subscriptions", "list", "--json"))
    [desk] = listed["subscriptions"]
    assert (desk["delivered"], desk["failed_attempts"], desk["backlog"], desk["parked"]) == (
        HANOI_ONLY,
        7,
        0,
        0,
    )


def test_the_delivery_service_killed_mid_stream_resumes_and_loses_nothing(
    anywhere: str, tmp_path: Path
) -> None:
    """On one server and on a cluster, where the outbox entries and the log's
    acknowledgement are two steps: a kill between them adds nothing twice."""
    env = env_for(anywhere)
    port = free_port()
    secret = dateline(
        env,
        "subscriptions",
        "add",
        f"http://127.0.0.1:{port}/hook",
        "--allow-private",
        "--name",
        "all",
    )
    stories, per_story = 30, 100
    updates = tmp_path / "updates.ndjson"
    updates.write_bytes(
        b"\n".join(
            encode(
                update(
                    "dateline.statement.made",
                    subject=f"story-{n % stories:02d}",
                    id=f"u{n}",
                    data={"statement": f"s{n}", "speaker": "Kim Jong Un", "text": f"said {n}"},
                )
            )
            for n in range(stories * per_story)
        )
    )
    out = tmp_path / "received.ndjson"
    total = stories * per_story
    with receiver_process(port, out, secret, tmp_path / "receiver.log"):
        first = deliver(env, tmp_path / "deliver-1.log")
        dateline(env, "publish", str(updates))
        wait_for(lambda: len(acknowledged(out)) >= total // 5, 90, "a fifth delivered")
        first.send_signal(signal.SIGKILL)
        first.wait()
        at_kill = len(acknowledged(out))
        second = deliver(env, tmp_path / "deliver-2.log")
        try:
            wait_for(
                lambda: len({r["headers"]["webhook-id"] for r in acknowledged(out)}) >= total,
                120,
                "every update after the restart",
            )
            time.sleep(0.5)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
    acks = acknowledged(out)
    assert at_kill < total  # the kill landed mid-stream
    ids = Counter(r["headers"]["webhook-id"] for r in acks)
    assert len(ids) == total
    # At least once: only what was in flight when the process died can come twice, and it
    # comes with the same webhook-id, so a receiver drops it.
    twice = sum(n - 1 for n in ids.values())
    assert twice <= 16  # the worker's concurrency: at most one in flight per story slot
    by_story: dict[str, list[int]] = defaultdict(list)
    for r in acks:
        body = json.loads(base64.b64decode(r["body"]))
        by_story[body["subject"]].append(body["version"])
    for versions in by_story.values():
        assert versions == sorted(versions)  # a repeat comes right after itself
        assert sorted(set(versions)) == list(range(1, per_story + 1))
    assert all(r["valid"] for r in acks)
    assert (
        Webhook(secret).verify(
            base64.b64decode(acks[0]["body"]), acks[0]["headers"], json_parse=False
        )
        is None
    )
