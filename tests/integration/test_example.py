"""The kit's example app (`examples/schedule_alerts.py`) against a real server: the
Hanoi story in, the desk's alerts out, in the story's order."""

from __future__ import annotations

import io

import pytest
from examples.schedule_alerts import create_app

from dateline.store.log import Log
from tests.integration.test_kit import until
from tests.projection_helpers import HANOI

pytestmark = pytest.mark.cluster_too  # each server, and the local cluster


async def test_the_example_tells_the_desk_what_moved(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATELINE_PREFIX", log.keys.prefix)
    out = io.StringIO()
    app = create_app(url, out=out)
    await log.append([line for line in HANOI.read_bytes().splitlines() if line.strip()])
    await app.start()
    try:
        await until(lambda: out.getvalue().count("\n") >= 3)
    finally:
        await app.stop()
    hanoi = [x for x in out.getvalue().splitlines() if x.startswith("[hanoi-summit-2019]")]
    assert hanoi == [
        "[hanoi-summit-2019] working-lunch cancelled: Cut from the programme at the last minute",
        "[hanoi-summit-2019] press-conference rescheduled (-PT2H): "
        "Trump moved up his press conference by two hours",
        "[hanoi-summit-2019] outcome no_agreement: No agreement was reached; the leaders left "
        "the Metropole hotel at 1.25pm with no public signing ceremony, and their teams look "
        "forward to meeting in the future.",
    ]
