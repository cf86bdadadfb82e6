"""On-call commands against a running projector: status, story as of, dlq, replay."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dateline.query.views import StoryView
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys, replay_key
from dateline.store.readmodels import READ_STORY, SHAPE, ReadModels
from tests.conftest import VALKEY, start_server
from tests.e2e.processes import free_port
from tests.factories import encode, update
from tests.projection_helpers import HANOI_UPDATES, HANOI_VERSION, hanoi_version_of

ROOT = Path(__file__).resolve().parents[2]
HANOI = ROOT / "examples" / "hanoi-summit-2019.ndjson"
DATELINE = Path(sys.executable).parent / "dateline"


def whole(client: redis.Redis, version: str) -> dict[str, Any]:
    """The story as readers get it: its state with its statements spliced in."""
    models = ReadModels(Keys("ops", 8), version)
    keys = [models.story("hanoi-summit-2019"), models.statements("hanoi-summit-2019")]
    story: dict[str, Any] = json.loads(client.eval(READ_STORY, 2, *keys))
    return story


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    server = start_server(VALKEY, tmp_path / "redis")
    try:
        yield {
            **os.environ,
            "REDIS_URL": server.url,
            "DATELINE_PREFIX": "ops",
            "COLUMNS": "200",
            "DATELINE_LEASE_TTL_MS": "1000",
            "DATELINE_SEAL_KEY": secrets.token_hex(32),
        }
    finally:
        server.stop()


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(DATELINE), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def wait_for(check: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def status(env: dict[str, str]) -> dict[str, Any]:
    """`dateline status --json`: JSON, which the test reads as it is."""
    report: dict[str, Any] = json.loads(run(env, "status", "--json").stdout)
    return report


def test_projector_status_story_dlq_and_replay(env: dict[str, str]) -> None:
    run(env, "publish", str(HANOI))
    # A log from before sealing (an older release wrote it), sealed by the operator: every
    # command below then reads it through the seal.
    sealed = run(env, "seal")
    assert f"8 partitions marked now, {HANOI_UPDATES} records from before sealing" in sealed.stdout
    assert "0 partitions marked now, 0 records" in run(env, "seal").stdout
    projector = subprocess.Popen(
        [str(DATELINE), "projector"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # a pipe nobody reads would block it once full,
    )
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:

        def caught_up() -> bool:
            rows = status(env)["partitions"]
            return all(r["lag"] == 0 and r["pending"] == 0 for r in rows)

        wait_for(caught_up, "the projector to catch up")
        report = status(env)
        assert report["projection"] == {
            "active": "v1",
            "versions": ["v1"],
            "shapes": {"v1": SHAPE},
            "current": SHAPE,
        }
        logged = sum(r["length"] for r in report["partitions"])
        assert logged == HANOI_UPDATES
        assert all(r["lease"] for r in report["partitions"])
        assert report["processes"] == [report["partitions"][0]["lease"]]
        table = run(env, "status").stdout
        assert "lag" in table and "parked: 0 updates in 0 stories" in table
        assert "sealed: 8 of 8 partitions\n" in table
        assert all(r["sealed_after"] for r in report["partitions"])
        assert f"processes of the group: 1 ({report['processes'][0]})" in table
        assert "older than this release" not in table
        # Read models an older release built: said, with what to run.
        shape = ReadModels(Keys(env["DATELINE_PREFIX"], 8), "v1").shape
        client.set(shape, SHAPE - 1)
        older = run(env, "status").stdout
        client.set(shape, SHAPE)
        assert f"read models of v1: shape {SHAPE - 1}, older than this release's {SHAPE}" in older
        assert "until `dateline replay stories`" in older
        # The embedded server's disk, in the JSON and in the text: its AOF.
        (disk,) = report["disks"]
        assert disk["aof"] is True and disk["aof_bytes"] > 0, disk
        assert re.search(r"server \S+: AOF [\d.,]+ MB", table), table

        # What the desk knew once the lunch was cut, before the press conference moved.
        cut = str(hanoi_version_of("wire-a-0012"))
        v12 = json.loads(
            run(env, "story", "hanoi-summit-2019", "--at-version", cut, "--json").stdout
        )
        assert v12["schedule"]["working-lunch"]["status"] == "cancelled"
        assert v12["schedule"]["press-conference"]["status"] == "scheduled"
        now = json.loads(run(env, "story", "hanoi-summit-2019", "--json").stdout)
        assert now["schedule"]["press-conference"]["status"] == "rescheduled"
        assert set(now) == set(StoryView.__struct_fields__)  # no bookkeeping: what the API shows
        stored_v1 = whole(client, "v1")
        folded = {k: v for k, v in now.items() if k != "parked_at"}  # the API's, not stored
        # So is whether an item is overdue: asked of the clock as the story is read.
        assert now["schedule"]["press-conference"]["overdue"] is True
        assert not now["schedule"]["summit"]["overdue"]
        folded["schedule"] = {
            ref: {k: v for k, v in item.items() if k != "overdue"}
            for ref, item in now["schedule"].items()
        }
        assert {k: v for k, v in stored_v1.items() if k in now} == folded  # a fold of the log
        before = run(env, "story", "hanoi-summit-2019", "--as-of", "2000-01-01T00:00:00Z", ok=False)
        assert before.returncode == 1
        assert "no updates as of 2000-01-01T00:00:00Z in the log" in before.stderr

        # An entry written around the append function (a raw XADD): it names a story but
        # carries no seal. It is retried, parked with its traceback, and the story's later
        # updates park behind it.
        stream = next(
            f"ops:{{p{p}}}:log"
            for p in range(8)
            if client.lrange(f"ops:{{p{p}}}:story:hanoi-summit-2019", 0, 0)
        )
        client.xadd(
            stream,
            {
                "__data__": json.dumps(
                    {"subject": "hanoi-summit-2019", "version": HANOI_VERSION + 1}
                )
            },
        )
        wait_for(lambda: status(env)["dead_letters"]["parked_updates"] == 1, "the poison to park")
        listed = run(env, "dlq", "list", "--json").stdout.splitlines()
        assert len(listed) == 1
        assert json.loads(listed[0])["story"] == "hanoi-summit-2019"
        shown = run(env, "dlq", "show", "hanoi-summit-2019").stdout
        assert "Traceback" in shown and "Unsealed" in shown and "no seal" in shown
        parked = json.loads(listed[0])
        held = run(env, "story", "hanoi-summit-2019", "--json")  # the log's story, and
        at = f"{parked['partition']}:{parked['entry']}"  # where the read models stop
        assert json.loads(held.stdout)["parked_at"] == at
        assert f"hold this story back at {at}" in held.stderr
        redriven = run(env, "dlq", "redrive", "hanoi-summit-2019").stdout
        assert f"rebuilt to version {HANOI_VERSION}; released 1 parked updates" in redriven
        assert run(env, "dlq", "list").stdout.strip() == "no parked updates"
        # Nothing parked now: said, not "rebuilt; released 0", nor a question first.
        again = run(env, "dlq", "redrive", "hanoi-summit-2019", ok=False)
        assert again.returncode == 1 and "is not parked: nothing to redrive" in again.stderr
        dropped = run(env, "dlq", "discard", "hanoi-summit-2019", ok=False)
        assert dropped.returncode == 1 and "has no parked updates" in dropped.stderr
        assert "Drop" not in dropped.stdout
        released = run(env, "story", "hanoi-summit-2019", "--json")
        assert json.loads(released.stdout)["parked_at"] is None
        assert "hold this story back" not in released.stderr

        replayed = run(env, "replay", "stories", "--story", "cohen-hearing-2019").stdout
        assert "rebuilt from the log to version 4" in replayed
        # An id the log has no update of: said, and no empty story served at version 0.
        none = run(env, "replay", "stories", "--story", "no-such-story", ok=False)
        assert none.returncode == 1, none.stderr
        assert "the log has no update of story 'no-such-story'" in none.stderr
        assert not list(client.scan_iter(match="ops:rm:v1:*no-such-story*"))
        bad = run(env, "replay", "stories", "--story", "HANOI", ok=False)
        assert bad.returncode == 2 and 'got "HANOI"' in bad.stderr

        # Blue/green: v2 is built beside v1, the running projector follows, v1 is dropped.
        full = run(env, "replay", "stories")
        rebuilt = f"stories: v1 -> v2: 2 stories, {HANOI_UPDATES} updates from histories"
        assert rebuilt in full.stdout
        assert "dropped v1" in full.stdout
        assert "updates/s" in full.stderr  # the progress bar
        # An errand logs its warnings, not its machinery's info lines, unless asked.
        assert "partition taken" not in full.stderr, full.stderr
        assert status(env)["projection"] == {
            "active": "v2",
            "versions": ["v2"],
            "shapes": {"v2": SHAPE},
            "current": SHAPE,
        }
        wait_for(
            lambda: all(r["lease"] for r in status(env)["partitions"]),
            "the projector to take v2's partitions",
        )
        assert whole(client, "v2") == stored_v1  # the rebuild equals the live projection
        told = run({**env, "DATELINE_LOG_LEVEL": "info"}, "replay", "stories")
        assert "v2 -> v3" in told.stdout and "partition taken" in told.stderr
    finally:
        projector.send_signal(signal.SIGTERM)
        assert projector.wait(timeout=30) == 0
        client.close()


def test_status_watch_says_stalled_with_no_projector_then_up_to_date(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`dateline status --watch`: a line a report, the pace over the last 10 s. With
    updates waiting and no projector, stalled, and why; once one has run, up to date."""
    waiting = tmp_path / "waiting.ndjson"
    waiting.write_text(
        "".join(encode(update(subject=f"watched-{i}")).decode() + "\n" for i in range(300))
    )
    run(env, "publish", str(waiting))
    lines = run(env, "status", "--watch", "--every", "1", "--times", "3").stdout.splitlines()
    assert len(lines) == 3, lines
    assert re.fullmatch(
        r"\d\d:\d\d:\d\dZ  300 behind; the pace from the next report \(oldest waiting [\d.]+ s\)",
        lines[0],
    ), lines
    for line in lines[1:]:
        assert "STALLED: 300 behind and nothing projected in" in line, line
        assert "; appended 0/s, projected 0/s" in line, line
        assert line.endswith("; no projector process is running (`dateline projector`)"), line
    projector = subprocess.Popen(
        [str(DATELINE), "projector"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: sum(r["lag"] for r in status(env)["partitions"]) == 0, "the catch-up")
        watched = run(env, "status", "--watch", "--json", "--every", "1", "--times", "2")
        first, last = (json.loads(line) for line in watched.stdout.splitlines())
        assert first["pace"] is None and first["sample"]["appended"] == 300
        assert last["pace"]["verdict"] == "up to date", last
        assert last["pace"]["lag"] == 0 and last["pace"]["exact"] is True
    finally:
        projector.send_signal(signal.SIGTERM)
        projector.wait(timeout=30)


def test_status_watch_goes_on_through_an_outage_and_ends_cleanly_on_ctrl_c(
    tmp_path: Path,
) -> None:
    """The server stopped under a watch: a line saying so, naming it, a report; back, the
    watch reports again. Ctrl-C ends it with status 0 and no traceback."""
    port = free_port()
    server = EmbeddedRedis(tmp_path / "server", fsync="everysec", port=port)
    server.start()
    # Python's stacks to the output if the watch must be stopped by force (`ended`).
    env = {**os.environ, "REDIS_URL": server.url, "DATELINE_PREFIX": "outage"}
    env["PYTHONFAULTHANDLER"] = "1"
    waiting = tmp_path / "waiting.ndjson"
    waiting.write_text("".join(encode(update(subject=f"w-{i}")).decode() + "\n" for i in range(40)))
    run(env, "publish", str(waiting))
    said = tmp_path / "watch.out"
    watch = watching(env, said)
    try:
        wait_for(lambda: "40 behind" in said.read_text(), "a first report")
        server.stop()
        gone = f"no report: Redis at 127.0.0.1:{port} cannot be reached"
        wait_for(lambda: gone in said.read_text(), "the outage said")
        assert watch.poll() is None, said.read_text()
        server.start()
        back = len(said.read_text().splitlines())
        wait_for(
            lambda: "40 behind" in "".join(said.read_text().splitlines()[back:]), "a report again"
        )
        watch.send_signal(signal.SIGINT)
        assert ended(watch, said) == 0, said.read_text()
        assert "Traceback" not in said.read_text()
        assert "; asking again in 0.5 s" in said.read_text()
        # SIGTERM (a supervisor, `timeout`) ends a watch as cleanly.
        watch = watching(env, said)
        wait_for(lambda: "40 behind" in said.read_text(), "a report")
        watch.send_signal(signal.SIGTERM)
        assert ended(watch, said) == 0, said.read_text()
        assert "Traceback" not in said.read_text()
    finally:
        if watch.poll() is None:
            watch.kill()
        server.stop()


def watching(env: dict[str, str], said: Path) -> subprocess.Popen[bytes]:
    """`dateline status --watch` every 0.5 s, its output (and stacks) into `said`."""
    with said.open("wb") as out:
        return subprocess.Popen(
            [str(DATELINE), "status", "--watch", "--every", "0.5"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def ended(proc: subprocess.Popen[bytes], said: Path) -> int:
    """`proc`'s status once it has ended; one that has not within 15 s is made to write
    its stacks (faulthandler, on SIGABRT) and the test fails on what it wrote."""
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait(timeout=15)
        raise AssertionError(f"still running 15 s after the signal:\n{said.read_text()}") from None


def test_status_says_how_a_rebuild_stands_and_about_how_long_it_has_to_go(
    env: dict[str, str],
) -> None:
    """On call runs `dateline replay` in one terminal and watches from another: the
    report and the watch say the rebuild's progress, and at its rate how long to go."""
    client = redis.Redis.from_url(env["REDIS_URL"])
    client.hset(  # as `dateline replay` writes it
        replay_key(env["DATELINE_PREFIX"]),
        mapping={"version": "v2", "done": 1000, "total": 5000, "rate": 400, "state": "rebuilding"},
    )
    said = "rebuild v2: 1,000 of 5,000 updates (20%), 400/s, rebuilding, about 10 s to go"
    assert said in run(env, "status").stdout.splitlines()
    (line,) = run(env, "status", "--watch", "--times", "1").stdout.splitlines()
    assert line.endswith(f"; {said}"), line
    client.hset(
        replay_key(env["DATELINE_PREFIX"]), mapping={"done": 5000, "state": "switched from v1"}
    )
    assert "rebuild v2: 5,000 of 5,000 updates (100%), 400/s, switched from v1" in (
        run(env, "status").stdout.splitlines()
    )
    client.close()
