"""Real service processes for end-to-end tests and benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

DATELINE = Path(sys.executable).parent / "dateline"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def ingest_process(env: dict[str, str], log_file: Path) -> Iterator[str]:
    """`dateline ingest` on a free loopback port; yields its base URL once it answers.

    Its output goes to a file, never to a pipe: nobody reads a pipe here, and a full
    one blocks the server.
    """
    port = free_port()
    with log_file.open("wb") as logs:
        proc = subprocess.Popen(
            [str(DATELINE), "ingest", "--port", str(port)], env=env, stdout=logs, stderr=logs
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
                raise RuntimeError(f"ingest did not answer; see {log_file}")
            yield base
        finally:
            proc.terminate()
            # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says so.
            assert proc.wait(timeout=30) in (0, -15)


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
