"""deploy/views.acl on a real second server, beside deploy/users.acl on the log's: the
projector and the query service reach the store of read models as their own users,
the on-call commands as `admin`, and nothing is refused (docker-compose.yml's layout)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from dateline.store.embedded import EmbeddedRedis
from tests.e2e.processes import background, http_service
from tests.e2e.test_acl import ACL, dateline_with, env_for, url

VIEWS_ACL = Path(__file__).parents[2] / "deploy" / "views.acl"
HANOI = Path(__file__).parents[2] / "examples" / "hanoi-summit-2019.ndjson"


def _server(path: Path, acl: Path, fsync: str) -> EmbeddedRedis:
    return EmbeddedRedis(
        path,
        fsync=fsync,  # type: ignore[arg-type]
        extra=(f"aclfile {acl}",),
        credentials=("admin", "dev-admin-password"),
    )


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    log = _server(tmp_path_factory.mktemp("log"), ACL, "always")
    views = _server(tmp_path_factory.mktemp("views"), VIEWS_ACL, "everysec")
    log.start()
    views.start()
    try:
        yield log, views
    finally:
        views.stop()
        log.stop()


def env(servers: tuple[EmbeddedRedis, EmbeddedRedis], user: str) -> dict[str, str]:
    log, views = servers
    return {**env_for(log, user), "DATELINE_VIEWS_URL": url(views, user)}


def test_the_projector_query_and_on_call_use_the_store_under_their_own_users(
    servers: tuple[EmbeddedRedis, EmbeddedRedis], tmp_path: Path
) -> None:
    def dateline(user: str, *args: str) -> str:
        return dateline_with(env(servers, user), *args)

    dateline("admin", "seal")
    ops = dateline("admin", "readers", "add", "on-call", "--role", "ops")
    with (
        background(["projector"], env(servers, "projector"), tmp_path / "projector.log"),
        http_service("query", env(servers, "query"), tmp_path / "query.log") as query,
    ):
        dateline("admin", "publish", str(HANOI))
        reading = {"Authorization": f"Bearer {ops}"}
        deadline = time.monotonic() + 60
        story: dict[str, object] = {}
        while time.monotonic() < deadline and story.get("status") != "concluded":
            r = httpx.get(f"{query}/v1/stories/hanoi-summit-2019", headers=reading)
            story = r.json() if r.status_code == 200 else {}
            time.sleep(0.2)
        assert story.get("status") == "concluded", story
        status = httpx.get(f"{query}/v1/status", headers=reading).json()
        assert len(status["disks"]) == 2
        assert "v1 -> v2" in dateline("admin", "replay", "stories")
        assert "projection v2" in dateline("admin", "status")
    log, views = servers

    def admin(server: EmbeddedRedis) -> redis.Redis:
        return redis.Redis(port=server.port, username="admin", password="dev-admin-password")

    assert admin(views).get("dateline:rm:active") == b"v2"
    assert not list(admin(log).scan_iter(match="dateline:rm:*"))
    for path in tmp_path.glob("*.log"):
        said = path.read_text()
        assert "NOPERM" not in said and "no permissions" not in said, path
