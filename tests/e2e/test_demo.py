"""`dateline demo` as a new user runs it: the dashboard answers, the story completes, a dead
service comes back, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.e2e.processes import DATELINE, free_port
from tests.projection_helpers import HANOI_UPDATES, HANOI_VERSION


def processes_of(data_dir: Path) -> dict[int, str]:
    """Every process whose environment names this data dir: the demo and all it started."""
    marker = f"DATELINE_DATA_DIR={data_dir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def wait_for(what: str, check: object, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_demo_runs_the_whole_system_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATELINE_PREFIX")}
    env["DATELINE_DATA_DIR"] = str(data_dir)
    port, ingest_port = free_port(), free_port()
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        demo = subprocess.Popen(
            [
                str(DATELINE),
                "demo",
                "--pace",
                "0.05",
                "--port",
                str(port),
                "--ingest-port",
                str(ingest_port),
            ],
            env=env,
            stdout=sink,
            stderr=sink,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("the dashboard", lambda: httpx.get(f"{base}/").status_code == 200)
        assert "dateline" in httpx.get(f"{base}/").text
        wait_for("the sign-in link", lambda: "Sign in:" in out.read_text())
        [link] = re.findall(r"Sign in:\s+(\S+)", out.read_text())
        assert httpx.get(f"{base}/v1/stories").status_code == 401  # no one signed in
        browser = httpx.Client(base_url=base)
        signed = browser.get(link)
        assert signed.status_code == 303
        assert signed.headers["location"] == "/#/stories/hanoi-summit-2019"
        assert "HttpOnly" in signed.headers["set-cookie"]
        assert "samesite=strict" in signed.headers["set-cookie"].lower()
        assert browser.get(link).headers["location"] == "/signin.html?expired"  # used once
        wait_for(
            "the whole story",
            lambda: (
                browser.get("/v1/stories/hanoi-summit-2019").json().get("version") == HANOI_VERSION
            ),
        )
        text = out.read_text()
        assert f"Dashboard:  {base}/#/stories/hanoi-summit-2019" in text
        assert f"all {HANOI_UPDATES} updates published" in text

        running = processes_of(data_dir)
        kinds = {
            name
            for name in ("ingest", "validator", "projector", "query")
            for cmd in running.values()
            if f"dateline {name}" in cmd
        }
        assert kinds == {"ingest", "validator", "projector", "query"}, running
        # The log is sealed, and the key is with the processes that read it, never with
        # those that append.
        status = browser.get("/v1/status").json()
        assert all(p["sealed_after"] for p in status["partitions"]), status["partitions"]
        services = ("ingest", "validator", "projector", "query", "deliver")
        for pid, cmd in running.items():
            if not any(f"dateline {name}" in cmd for name in services):
                continue  # the demo itself
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            holds = any(v.startswith(b"DATELINE_SEAL_KEY=") for v in environ)
            appends = "dateline ingest" in cmd or "dateline validator" in cmd
            assert holds != appends, (cmd, holds)
        [projector] = [pid for pid, cmd in running.items() if "dateline projector" in cmd]
        os.kill(projector, signal.SIGKILL)
        wait_for("the projector's restart", lambda: "projector restarted" in out.read_text(), 30)
        assert "projector exited with signal SIGKILL" in out.read_text()
        again = [pid for pid, cmd in processes_of(data_dir).items() if "dateline projector" in cmd]
        assert len(again) == 1 and again != [projector]
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = demo.wait(timeout=60)
    assert code == 0, out.read_text()
    assert "stopped" in out.read_text()
    leftovers = processes_of(data_dir)
    assert leftovers == {}, leftovers
