"""The tests' own `free_port`: each xdist worker picks from its own share, never one it
handed out lately (two workers' `bind(0)` once gave the same port to two services)."""

from __future__ import annotations

import pytest

from tests.e2e.processes import TEST_PORTS, free_port


@pytest.mark.parametrize("worker", [0, 1])
def test_each_worker_picks_from_its_own_half(monkeypatch: pytest.MonkeyPatch, worker: int) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
    half = len(TEST_PORTS) // 2
    share = range(TEST_PORTS.start + worker * half, TEST_PORTS.start + (worker + 1) * half)
    ports = [free_port() for _ in range(100)]
    assert all(p in share for p in ports)
    assert len(set(ports)) == len(ports)  # none handed out twice in a row of 100
