"""Fixtures of the integration tests alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from dateline.runtime.wakes import Wakes


@pytest.fixture(autouse=True)
async def _waiters_stopped(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Every runner's waiters (a runner on a cluster) stopped when its test ends.

    A test that closes its client without `release_all` would leave them running on the
    session's event loop for up to `LEFT_S`, failing on what the next test deleted: a
    warning in that test's output and a count in its `dateline_partitions_polled`."""
    made: list[Wakes] = []
    real = Wakes.__init__

    def recorded(self: Wakes, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Wakes, "__init__", recorded)
    yield
    for wakes in made:
        await wakes.close()
