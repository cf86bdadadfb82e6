"""The `dateline` command as a user runs it: real processes, the embedded server, a data dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tests.conftest import VALKEY, start_server
from tests.e2e.processes import free_port
from tests.projection_helpers import HANOI_UPDATES, HANOI_VERSION, hanoi_version_of

ROOT = Path(__file__).resolve().parents[2]
HANOI = ROOT / "examples" / "hanoi-summit-2019.ndjson"
DATELINE = Path(sys.executable).parent / "dateline"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh data dir and the embedded server: REDIS_URL unset, as for a new user."""
    clean = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return {**clean, "DATELINE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "160"}


def run(
    env: dict[str, str], *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DATELINE), *args],
        env=env,
        input=stdin.decode() if stdin else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_publish_the_hanoi_story_then_read_it_back(env: dict[str, str]) -> None:
    first = run(env, "publish", str(HANOI))
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == HANOI_UPDATES and all(" appended " in line for line in lines)
    assert f"{HANOI_UPDATES} updates: {HANOI_UPDATES} appended" in first.stderr

    again = run(env, "publish", "--json", str(HANOI))
    assert again.returncode == 0
    results = [json.loads(line) for line in again.stdout.splitlines()]
    assert {r["status"] for r in results} == {"duplicate"}
    assert [r["line"] for r in results] == list(range(1, HANOI_UPDATES + 1))

    # A file whose first id is used again for other content: exit 1, and what differs.
    first_doc = json.loads(HANOI.read_bytes().splitlines()[0])
    reused = json.dumps({**first_doc, "time": "2019-02-26T09:00:00+07:00"}).encode()
    said = run(env, "publish", "-", stdin=reused + b"\n")
    assert said.returncode == 1
    assert " duplicate " in said.stdout and "differs in time" in said.stdout
    assert "1 updates: 1 duplicate (1 of them an id used again for other content)" in said.stderr

    history = run(env, "log", "hanoi-summit-2019", "--json")
    records = [json.loads(line) for line in history.stdout.splitlines()]
    assert [r["version"] for r in records] == list(range(1, HANOI_VERSION + 1))
    moved = records[hanoi_version_of("wire-a-0013") - 1]  # the press conference moved up
    assert moved["type"] == "dateline.schedule.rescheduled"
    assert moved["data"]["shift"] == "-PT2H"

    table = run(env, "log", "hanoi-summit-2019")
    assert "Cancelled working-lunch" in table.stdout
    assert "Rescheduled press-conference: moved up 2 h" in table.stdout


def test_refused_updates_exit_1_and_say_why(env: dict[str, str]) -> None:
    good = HANOI.read_bytes().splitlines()[0]
    bad = json.dumps({**json.loads(good), "id": "other", "subject": "Hanoi Summit"}).encode()
    result = run(env, "publish", "-", stdin=good + b"\n\n" + bad + b"\n{oops\n")
    assert result.returncode == 1
    out = result.stdout.splitlines()
    assert out[0].startswith("line 1") and "appended" in out[0]
    assert out[1].startswith("line 3") and "subject: expected a story id" in out[1]
    assert out[2].startswith("line 4") and "not valid UTF-8 JSON" in out[2]
    assert "1 appended, 2 invalid" in result.stderr


def test_log_of_an_unknown_story_fails_clearly(env: dict[str, str]) -> None:
    result = run(env, "log", "no-such-story")
    assert result.returncode == 1
    assert "has no updates in the log" in result.stderr and "Traceback" not in result.stderr


def test_log_of_a_range_past_a_story_says_what_the_log_holds(env: dict[str, str]) -> None:
    """Said for what it is: the versions there are, not "no updates" as for no story."""
    run(env, "publish", str(HANOI))
    past = run(env, "log", "cohen-hearing-2019", "--from-version", "9")
    assert past.returncode == 1
    assert "no updates in this range; the log holds its versions 1 to 4" in past.stderr
    backwards = run(env, "log", "cohen-hearing-2019", "--from-version", "3", "--to-version", "2")
    assert backwards.returncode == 2
    assert "--to-version 2 is before --from-version 3" in backwards.stderr


def test_bad_settings_are_named(env: dict[str, str]) -> None:
    result = run({**env, "DATELINE_PARTITIONS": "many"}, "log", "x")
    assert result.returncode == 2
    assert "DATELINE_PARTITIONS" in result.stderr


def test_redis_command_serves_others_and_stops_cleanly(env: dict[str, str]) -> None:
    server = subprocess.Popen([str(DATELINE), "redis"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        secret = (Path(env["DATELINE_DATA_DIR"]) / "redis.password").read_text().strip()
        assert url.startswith(f"redis://:{secret}@127.0.0.1:")  # it requires a password
        published = run({**env, "REDIS_URL": url}, "publish", str(HANOI))
        assert published.returncode == 0
        shared = run(env, "log", "cohen-hearing-2019", "--json")  # finds the running server
        assert len(shared.stdout.splitlines()) == 4
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    assert not (Path(env["DATELINE_DATA_DIR"]) / "redis.url").exists()
    # The AOF kept it all: a new embedded server reads it back.
    assert len(run(env, "log", "cohen-hearing-2019", "--json").stdout.splitlines()) == 4


def test_redis_cluster_starts_a_cluster_and_ctrl_c_stops_every_node(
    env: dict[str, str],
) -> None:
    command = [str(DATELINE), "redis", "--cluster", "--replicas", "1"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        secret = (Path(env["DATELINE_DATA_DIR"]) / "redis.password").read_text().strip()
        assert url.startswith(f"redis://:{secret}@127.0.0.1:")
        layout = json.loads(
            (Path(env["DATELINE_DATA_DIR"]) / "cluster" / "cluster.json").read_text()
        )
        ports = layout["ports"][::2]  # each node's client port; the bus's beside it
        assert len(ports) == 6
        client = RedisCluster.from_url(url)
        assert client.cluster_info()["cluster_state"] == "ok"
        assert len(client.get_primaries()) == 3  # type: ignore[no-untyped-call]
        client.close()
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    for port in ports:  # nothing listens on any node's port
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_help_helps() -> None:
    result = subprocess.run(
        [str(DATELINE), "publish", "--help"], capture_output=True, text=True, check=True
    )
    assert "Exits 1 if any update was refused" in result.stdout
    assert "--atomic" in result.stdout


def test_log_as_of_shows_what_the_desk_knew_then(env: dict[str, str]) -> None:
    """--as-of cuts the history at a recorded time: later updates are not shown."""
    lines = HANOI.read_bytes().splitlines()
    assert run(env, "publish", "-", stdin=b"\n".join(lines[:3]) + b"\n").returncode == 0
    first = json.loads(run(env, "log", "hanoi-summit-2019", "--json").stdout.splitlines()[-1])
    time.sleep(0.05)  # the next append gets a later recordedtime
    assert run(env, "publish", str(HANOI)).returncode == 0
    cut = run(env, "log", "hanoi-summit-2019", "--json", "--as-of", first["recordedtime"])
    assert [json.loads(x)["version"] for x in cut.stdout.splitlines()] == [1, 2, 3]
    full = run(env, "log", "hanoi-summit-2019", "--json")
    assert len(full.stdout.splitlines()) == HANOI_VERSION
    naive = run(env, "log", "hanoi-summit-2019", "--as-of", "2019-02-28T13:00:00")
    assert naive.returncode == 2
    assert "give an offset" in naive.stderr


def test_publish_needs_editor_to_correct_another_sources_update(env: dict[str, str]) -> None:
    """Rule 5 on the on-call tool: refused by name without --editor, nothing written;
    with it, the log records the right and the correction applies."""
    said = {
        "specversion": "1.0",
        "id": "st-1",
        "source": "urn:feed:wire-a",
        "type": "dateline.statement.made",
        "subject": "rule-five",
        "time": "2019-02-28T10:00:00+07:00",
        "data": {"statement": "s1", "speaker": "Kim Jong Un", "text": "Typo here"},
    }
    fix = {
        **said,
        "id": "desk-1",
        "source": "urn:feed:desk",
        "type": "dateline.correction.issued",
        "time": "2019-02-28T11:00:00+07:00",
        "data": {
            "corrects": "st-1",
            "target_source": "urn:feed:wire-a",
            "changes": {"text": "No typo"},
            "note": "Corrected by the desk.",
        },
    }
    lines = (json.dumps(said) + "\n" + json.dumps(fix) + "\n").encode()
    refused = run(env, "publish", "-", stdin=lines)
    assert refused.returncode == 2 and "rule 5" in refused.stderr and "--editor" in refused.stderr
    assert run(env, "log", "rule-five", "--json").stdout == ""
    done = run(env, "publish", "--editor", "-", stdin=lines)
    assert done.returncode == 0, done.stderr
    records = [json.loads(x) for x in run(env, "log", "rule-five", "--json").stdout.splitlines()]
    assert [r.get("editor") for r in records] == [True, True]
    story = json.loads(run(env, "story", "rule-five", "--json").stdout)
    assert story["statements"]["s1"]["text"] == "No typo"
    assert story["corrections"][0]["source"] == "urn:feed:desk"


def test_a_server_that_cannot_be_reached_is_said_in_one_line(env: dict[str, str]) -> None:
    """Where redis-py's frames were a traceback: the server, the cause, what to check."""
    port = free_port()  # nothing listens there
    unreachable = {**env, "REDIS_URL": f"redis://:secret@127.0.0.1:{port}/0"}
    for args in (("status",), ("publish", str(HANOI)), ("log", "hanoi-summit-2019")):
        result = run(unreachable, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert f"Error: Redis at 127.0.0.1:{port} cannot be reached" in result.stderr, args
        assert "REDIS_URL" in result.stderr
        assert "Traceback" not in result.stderr and "secret" not in result.stderr


def test_credentials_refused_and_writes_refused_are_said_with_what_to_do(
    env: dict[str, str], tmp_path: Path
) -> None:
    server = start_server(VALKEY, tmp_path / "server")
    admin = redis.Redis.from_url(server.url)
    try:
        at = {**env, "REDIS_URL": server.url}
        admin.config_set("min-replicas-to-write", 1)  # wants a replica it does not have
        refused = run(at, "publish", str(HANOI))
        assert refused.returncode == 1, refused.stderr
        assert "refuses writes (NOREPLICAS)" in refused.stderr
        assert "lower the setting" in refused.stderr and "Traceback" not in refused.stderr
        admin.config_set("min-replicas-to-write", 0)
        assert run(at, "publish", str(HANOI)).returncode == 0  # the same command, again

        admin.config_set("requirepass", "right")
        admin = redis.Redis.from_url(server.url, password="right")
        wrong = run({**env, "REDIS_URL": server.url.replace("//", "//:wrong@")}, "status")
        assert wrong.returncode == 1, wrong.stderr
        assert "refused the credentials of REDIS_URL" in wrong.stderr
        assert "Traceback" not in wrong.stderr and ":wrong@" not in wrong.stderr
    finally:
        admin.config_set("requirepass", "")
        admin.close()
        server.stop()


def test_feeds_and_readers_list_as_json_without_their_tokens(env: dict[str, str]) -> None:
    """For an on-call script: one object a line, and no token nor digest in any."""
    feed_token = run(env, "feeds", "add", "wire-a", "--source", "urn:feed:wire-a").stdout
    reader_token = run(env, "readers", "add", "desk", "--story-prefix", "hanoi-").stdout
    feeds = [json.loads(x) for x in run(env, "feeds", "list", "--json").stdout.splitlines()]
    readers = [json.loads(x) for x in run(env, "readers", "list", "--json").stdout.splitlines()]
    assert [(f["name"], f["source"], f["revoked"]) for f in feeds] == [
        ("wire-a", "urn:feed:wire-a", False)
    ]
    assert [(r["name"], r["role"], r["story_prefixes"]) for r in readers] == [
        ("desk", "reader", ["hanoi-"])
    ]
    shown = json.dumps([feeds, readers])
    for token in (feed_token.split()[0], reader_token.split()[0]):
        assert token not in shown and token[3:20] not in shown
