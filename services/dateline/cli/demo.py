"""`dateline demo`: the Hanoi story unfolding on the embedded Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO

import click
from rich.console import Console

from dateline.cli.common import err, open_log, server, settings
from dateline.cli.log_cmd import render
from dateline.cli.publish import publish_lines, read_ndjson
from dateline.config import Settings

HANOI = Path(__file__).resolve().parents[3] / "examples" / "hanoi-summit-2019.ndjson"


@click.command()
@click.option(
    "--pace",
    type=click.FloatRange(0),
    default=0.6,
    show_default=True,
    help="Seconds between updates.",
)
@click.option(
    "--file",
    "file",
    type=click.File("rb"),
    default=None,
    help=f"NDJSON updates to publish instead of {HANOI.name}.",
)
def demo(pace: float, file: IO[bytes] | None) -> None:
    """Publish the Hanoi summit story update by update, then print its history.

    Until the dashboard lands (issue 5) this is the main job: it shows the log
    accepting the story, with versions and positions, and what it holds after.
    Publishing again is safe: every update comes back as a duplicate.
    """
    lines = read_ndjson(file) if file else read_ndjson(HANOI.open("rb"))
    cfg = settings()
    with server(cfg) as url:
        err(f"Redis: {url}  data: {cfg.data_dir}")
        asyncio.run(_demo(url, cfg, lines, pace))


async def _demo(url: str, cfg: Settings, lines: list[tuple[int, bytes]], pace: float) -> None:
    async with open_log(url, cfg) as log:
        await publish_lines(log, lines, batch_size=1, atomic=False, pace=pace, as_json=False)
        records = await log.read_story_json("hanoi-summit-2019")
    Console().print(render(records, "hanoi-summit-2019"))
