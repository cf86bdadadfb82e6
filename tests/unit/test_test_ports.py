"""The tests' own `free_port`: each xdist worker picks from its own share, never one it
handed out lately (two workers' `bind(0)` once gave the same port to two services)."""

from __future__ import annotations

import pytest

from dateline.store import embedded
from dateline.store.embedded import stable_ports
from tests.e2e.processes import TEST_PORTS, free_port
from tests.ports import worker_share


@pytest.mark.parametrize("worker", [0, 1])
def test_each_worker_picks_from_its_own_half(monkeypatch: pytest.MonkeyPatch, worker: int) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
    half = len(TEST_PORTS) // 2
    share = range(TEST_PORTS.start + worker * half, TEST_PORTS.start + (worker + 1) * half)
    ports = [free_port() for _ in range(100)]
    assert all(p in share for p in ports)
    assert len(set(ports)) == len(ports)  # none handed out twice in a row of 100


@pytest.mark.parametrize("worker", [0, 1])
def test_each_worker_chooses_stable_ports_from_its_own_half(
    monkeypatch: pytest.MonkeyPatch, worker: int
) -> None:
    """Cluster nodes and restarted services take `stable_ports`: a worker's own share of
    `STABLE_PORTS`, as the root conftest sets it for the session."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
    whole = range(20_000, 32_000)
    monkeypatch.setattr(embedded, "STABLE_PORTS", worker_share(whole))
    half = len(whole) // 2
    share = range(whole.start + worker * half, whole.start + (worker + 1) * half)
    ports = stable_ports(50)
    assert all(p in share for p in ports)
    assert len(set(ports)) == len(ports)


def test_this_workers_stable_ports_are_its_share() -> None:
    assert worker_share(range(20_000, 32_000)) == embedded.STABLE_PORTS
