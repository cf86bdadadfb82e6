"""Each pytest-xdist worker's own share of a range of ports, so that two workers never
pick the same port between one choosing it and its server listening there."""

from __future__ import annotations

import os


def worker_share(ports: range) -> range:
    """This worker's slice of `ports` (all of them when the tests run in one process)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = len(ports) // max(1, workers)
    return range(ports.start + worker * size, ports.start + (worker + 1) * size)
