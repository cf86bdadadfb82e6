"""The embedded server the CLI starts requires a password, made once into the data dir
and read by every command on it (issue 19, item 6)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import redis

from dateline.store.config import Settings
from dateline.store.embedded import served


def test_the_cli_server_refuses_a_client_without_its_password(tmp_path: Path) -> None:
    cfg = Settings(None, tmp_path / "data")
    with served(cfg) as (url, server):
        assert server is not None
        secret = (tmp_path / "data" / "redis.password").read_text().strip()
        assert len(secret) >= 32
        assert f":{secret}@127.0.0.1:" in url
        for private in ("redis.password", "redis.url"):
            mode = stat.S_IMODE((tmp_path / "data" / private).stat().st_mode)
            assert mode == 0o600, (private, oct(mode))
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        # Another command on the same data dir finds the server, password and all.
        with served(cfg) as (again, none):
            assert (again, none) == (url, None)
            assert redis.Redis.from_url(again).ping()
    # The next start keeps the password: the URL a deployment noted stays good.
    with served(cfg) as (url2, _):
        assert f":{secret}@" in url2
