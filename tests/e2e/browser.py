"""Debian's Chromium, headless, driven by Playwright: how the dashboard is tested."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(
    os.environ.get("DATELINE_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts"
)
# Without the background-networking flags Chromium keeps dialling Google's hosts, which a
# closed network refuses, many at a time.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The browser binary; the test fails (never skips) without one: .ci/run installs it."""
    found = os.environ.get("DATELINE_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "no Chromium: install Debian's chromium (apt-get install chromium; .ci/run does) "
            "or set DATELINE_CHROMIUM to a Chromium binary"
        )
    return found
