"""A server whose port dateline chooses starts even when that port is taken between the
choosing and the binding: by a listener, or by another server that would answer."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dateline.store import embedded
from dateline.store.embedded import EmbeddedRedis
from tests.e2e.processes import free_port


def _ports(monkeypatch: pytest.MonkeyPatch, *first: int) -> list[int]:
    """`embedded.free_port` answers `first` in turn, then free ports; returns all it gave."""
    given: list[int] = []
    queue = list(first)

    def chosen() -> int:
        given.append(queue.pop(0) if queue else free_port())
        return given[-1]

    monkeypatch.setattr(embedded, "free_port", chosen)
    return given


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        yield int(sock.getsockname()[1])


def _pid(server: EmbeddedRedis) -> int:
    client = redis.Redis.from_url(server.url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def test_a_port_taken_by_a_listener_is_left_for_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: int
) -> None:
    given = _ports(monkeypatch, listener)
    with EmbeddedRedis(tmp_path, lull=None) as server:
        assert len(given) == 2 and server.port == given[1] != listener
        assert server.process is not None and _pid(server) == server.process.pid


def test_a_port_where_another_server_answers_is_left_for_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmbeddedRedis(tmp_path / "other", lull=None) as other:
        given = _ports(monkeypatch, other.port)
        with EmbeddedRedis(tmp_path / "ours", lull=None) as ours:
            assert ours.port == given[-1] != other.port
            assert ours.process is not None and _pid(ours) == ours.process.pid
        assert other.process is not None and _pid(other) == other.process.pid  # untouched


def test_a_port_given_is_kept_and_its_failure_said(tmp_path: Path, listener: int) -> None:
    with pytest.raises(embedded.EmbeddedRedisError, match="Address already in use"):
        EmbeddedRedis(tmp_path, port=listener, lull=None).start()
