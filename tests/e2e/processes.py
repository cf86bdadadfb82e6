"""Real service processes for end-to-end tests and benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import httpx

import dateline
import dateline_schemas
from tests.ports import worker_share

DATELINE = Path(sys.executable).parent / "dateline"


def sources(*packages: Path) -> dict[str, str]:
    """Each file of these packages (the code the services import), with when it was last
    written and its size: an edit undone before the run ends still moved its time (a chaos
    run met one, 16 s long, in a service it restarted meanwhile)."""
    return {
        str(path): f"{stat.st_mtime_ns}:{stat.st_size}"
        for package in packages
        for path in sorted(package.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
        for stat in (path.stat(),)
    }


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )


SERVICES_CODE = (Path(dateline.__file__).parent, Path(dateline_schemas.__file__).parent)
"""What a process started from `DATELINE` imports, as it is when it starts: a run that
starts services as it goes (the chaos run's restarts, the bench's modules) and met an
edit of it ran more than one version of the code."""


TEST_PORTS = range(10_000, 20_000)
"""Where test services listen: below `dateline.store.embedded.STABLE_PORTS` (20,000 to
31,999) and Linux's ephemeral range (32,768 on), which outgoing connections take."""
_handed: deque[int] = deque(maxlen=500)


def free_port() -> int:
    """A free loopback port from this test worker's own share of `TEST_PORTS`, not one
    handed out lately. A port `bind(0)` gives is free only until another worker's
    `bind(0)` gives it again: CI once saw the demo's query refused its port, which
    answered for another test's query meanwhile."""
    share = worker_share(TEST_PORTS)
    for port in random.sample(share, min(len(share), 300)):
        if port in _handed:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed.append(port)
        return port
    raise RuntimeError(f"no free port in {share}, this test worker's share of {TEST_PORTS}")


@contextlib.contextmanager
def http_service(
    command: str, env: dict[str, str], log_file: Path, port: int | None = None
) -> Iterator[str]:
    """`dateline <command> --port P` on a loopback port; yields its base URL once it answers.

    Its output goes to a file, never to a pipe: nobody reads a pipe here, and a full
    one blocks the server.
    """
    port = port or free_port()
    with log_file.open("ab") as logs:
        proc = subprocess.Popen(
            [str(DATELINE), command, "--port", str(port)], env=env, stdout=logs, stderr=logs
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                raise RuntimeError(f"{command} did not answer; see {log_file}")
            yield base
        finally:
            proc.terminate()
            # A clean stop exits 0 (uvicorn raises SIGTERM again after its shutdown).
            assert proc.wait(timeout=30) == 0


def ingest_process(env: dict[str, str], log_file: Path) -> contextlib.AbstractContextManager[str]:
    return http_service("ingest", env, log_file)


@contextlib.contextmanager
def background(args: list[str], env: dict[str, str], log_file: Path) -> Iterator[int]:
    """A `dateline` command running until the block ends (then SIGTERM); yields its pid."""
    with log_file.open("ab") as logs:
        proc = subprocess.Popen([str(DATELINE), *args], env=env, stdout=logs, stderr=logs)
        try:
            yield proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@contextlib.contextmanager
def receiver_process(
    port: int, out: Path, secret: str, log_file: Path, script: str = "ok"
) -> Iterator[int]:
    """`tests/e2e/receiver.py` on a loopback port until the block ends; yields its pid."""
    root = Path(__file__).parents[2]
    with log_file.open("ab") as logs:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.receiver",
                "--port",
                str(port),
                "--out",
                str(out),
                "--secret",
                secret,
                "--script",
                script,
            ],
            cwd=root,
            stdout=logs,
            stderr=logs,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"the receiver did not listen; see {log_file}")
            yield proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def records(env: dict[str, str], story: str) -> list[dict[str, object]]:
    """A story's records via `dateline log --json`, without what depends on arrival time."""
    out = subprocess.run(
        [str(DATELINE), "log", story, "--json"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return [
        {k: v for k, v in json.loads(x).items() if k not in ("position", "recordedtime")}
        for x in out.splitlines()
    ]


def published_with_cli(ndjson: Path, data_dir: Path) -> dict[str, str]:
    """`dateline publish` into a fresh embedded server; the env that reads it back."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["DATELINE_DATA_DIR"] = str(data_dir)
    subprocess.run(
        [str(DATELINE), "publish", str(ndjson)], env=env, check=True, capture_output=True
    )
    return env
