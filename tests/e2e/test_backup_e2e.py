"""A lost log, restored from last night's backup, with real processes: `dateline up` on
an embedded data directory, a backup taken while it runs, more updates after it, then
the log's server's files lost while the store of read models kept its own. `dateline
restore` brings the log back as the backup holds it and deletes the read models, which
hold updates the restored log does not; once `up` runs again, the read models are built
from the restored log and take the updates that come after it.

Left in place, the old read models would read a story at a version the restored log has
not reached, and the projector would take the new updates' versions for applied."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.processes import DATELINE, free_port
from tests.e2e.test_demo import wait_for
from tests.factories import encode, update
from tests.projection_helpers import HANOI

STORY = "hanoi-summit-2019"


def _dateline(env: dict[str, str], *args: str, given: bytes | None = None) -> str:
    done = subprocess.run(
        [str(DATELINE), *args], env=env, input=given, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.decode()


def _up(env: dict[str, str], port: int, out: Path) -> subprocess.Popen[bytes]:
    with out.open("ab") as sink:
        return subprocess.Popen(
            [str(DATELINE), "up", "--port", str(port), "--ingest-port", str(free_port())],
            env=env,
            stdout=sink,
            stderr=sink,
        )


def _stopped(up: subprocess.Popen[bytes]) -> None:
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=60) == 0


def _story(query: str, reading: dict[str, str]) -> dict[str, Any]:
    found = httpx.get(f"{query}/v1/stories/{STORY}", headers=reading)
    return dict(found.json()) if found.status_code == 200 else {}


def test_a_lost_log_is_restored_from_its_backup_and_the_read_models_follow_it(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATELINE_PREFIX")}
    env |= {"DATELINE_DATA_DIR": str(data_dir), "DATELINE_LEASE_TTL_MS": "1000"}
    lines = [x for x in HANOI.read_bytes().splitlines() if x.strip()]
    first, later = lines[:20], lines[20:]  # the first 20 are Hanoi's versions 1 to 20
    _dateline(env, "publish", "-", given=b"\n".join(first))
    reading = {
        "authorization": "Bearer "
        + _dateline(env, "readers", "add", "ops", "--role", "ops").strip()
    }
    port = free_port()
    query = f"http://127.0.0.1:{port}"
    up = _up(env, port, tmp_path / "up.out")
    try:
        wait_for("Hanoi at version 20", lambda: _story(query, reading).get("version") == 20)
        backed = _dateline(env, "backup", str(tmp_path / "nightly.ndjson.gz"))
        assert "backed up 20 updates of 1 stories" in backed
        _dateline(env, "publish", "-", given=b"\n".join(later))
        wait_for("Hanoi at version 25", lambda: _story(query, reading).get("version") == 25)
        assert _story(query, reading)["status"] == "concluded"
    finally:
        _stopped(up)

    # The log's server's files are lost; the store of read models (its own server, under
    # data/views) still holds Hanoi at version 25.
    shutil.rmtree(data_dir / "appendonlydir")
    restored = _dateline(env, "restore", str(tmp_path / "nightly.ndjson.gz"))
    assert "restored 20 updates of 1 stories" in restored
    assert "keys of read models under 'dateline'" in restored
    assert [
        json.loads(x)["version"] for x in _dateline(env, "log", STORY, "--json").splitlines()
    ] == list(range(1, 21))

    # The newsroom goes on: a statement after the restore is version 21, not the lost one's.
    statement = encode(
        update(
            "dateline.statement.made",
            subject=STORY,
            id="after-restore-1",
            source="urn:feed:wire-a",
            data={
                "statement": "s-after",
                "speaker": "Sarah Sanders",
                "text": "Talks will continue.",
            },
        )
    )
    assert "appended" in _dateline(env, "publish", "-", given=statement)
    up = _up(env, port, tmp_path / "up.out")
    try:
        # The reader's token came back with the log: the same one reads.
        wait_for("Hanoi read again", lambda: int(_story(query, reading).get("version") or 0) >= 21)
        read = _story(query, reading)
        assert read["version"] == 21  # not the lost 25, which old read models would hold
        folded = json.loads(_dateline(env, "story", STORY, "--json"))
        assert read == folded
        assert read["status"] != "concluded"  # the lost conclusion is not read
        timeline = httpx.get(f"{query}/v1/stories/{STORY}/timeline", headers=reading).json()
        assert len(timeline["items"]) == 21
    finally:
        _stopped(up)
