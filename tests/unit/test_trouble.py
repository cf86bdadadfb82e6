"""What a command says when Redis is the trouble (`cli/trouble.py`): the server without
its password, the cause, what to do; and nothing for an error that is a bug."""

from __future__ import annotations

import pytest
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from dateline.cli.trouble import said, server
from dateline.store.connection import described, outage


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@10.0.0.7:6380/0", "10.0.0.7:6380"),
        ("rediss://user:s3cret@redis.example.org/2", "redis.example.org:6379"),
        ("unix:///run/valkey.sock?password=s3cret", "/run/valkey.sock"),
        ("", "the embedded server"),
    ],
)
def test_the_server_is_named_never_its_password(
    url: str, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    assert server() == shown
    line = said(RedisConnectionError("Error 111 connecting. Connection refused."))
    assert line is not None and shown in line and "s3cret" not in line
    assert "refused.." not in line  # the cause's own full stop, not a second one


def test_each_condition_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    wrong = said(AuthenticationError("invalid username-password pair"))
    assert wrong is not None and "refused the credentials" in wrong
    noperm = said(NoPermissionError("this user has no permissions to run the 'xadd' command"))
    assert noperm is not None and "deploy/users.acl" in noperm
    replica = said(ResponseError("READONLY You can't write against a read only replica."))
    assert replica is not None and "point REDIS_URL at the primary" in replica


def test_a_bug_keeps_its_traceback() -> None:
    assert said(ResponseError("WRONGTYPE Operation against a key holding the wrong kind")) is None
    assert said(ValueError("bad")) is None


def test_a_log_line_keeps_a_redis_errors_message() -> None:
    """redis-py 8 writes its errors' repr as a kind and a class alone; a log line wants
    the server's words."""
    refused = RedisConnectionError("Error 111 connecting to 10.0.0.7:6380. Connection refused.")
    assert repr(refused) == "network:ConnectionError"  # what every log line said before
    assert described(refused) == (
        "ConnectionError('Error 111 connecting to 10.0.0.7:6380. Connection refused.')"
    )
    assert (
        described(ResponseError("WRONGTYPE wrong kind")) == "ResponseError('WRONGTYPE wrong kind')"
    )
    assert described(ValueError("bad")) == "ValueError('bad')"  # Python's own, as it was


def test_credentials_refused_are_not_called_unreachable() -> None:
    """redis-py's AuthenticationError is a ConnectionError, which services wait out like
    an outage: their log line says which it is."""
    assert outage(AuthenticationError("invalid username-password pair")) == (
        "Redis refused the credentials"
    )
    assert outage(RedisConnectionError("Error 111 connecting to 127.0.0.1:6380.")) == (
        "Redis unreachable"
    )
    assert outage(OSError("no route to host")) == "Redis unreachable"
