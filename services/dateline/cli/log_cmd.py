"""`dateline log STORY`: a story's history as the log holds it."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from dateline.cli.common import open_log, server, settings, story_argument
from dateline.domain.instants import BadInstant, parse_instant
from dateline.domain.summary import summarize
from dateline_schemas import Update, decode_record


def parse_when(value: str) -> datetime:
    try:
        return parse_instant(value)
    except BadInstant as exc:
        raise click.BadParameter(str(exc)) from None


def happened(update: Update) -> str:
    """The event time as precisely as it is known, and no more."""
    t = update.time
    match update.timeprecision:
        case "month":
            return t.strftime("%Y-%m")
        case "day":
            return t.strftime("%Y-%m-%d")
        case "approximate":
            return t.strftime("~%Y-%m-%d")
        case _:
            return t.strftime("%Y-%m-%d %H:%M %z")


def render(records: list[bytes], story: str) -> Table:
    updates = [decode_record(raw) for raw in records]
    days = [_day(u) for u in updates]
    # A developing story is recorded over days: its first day in the title, and a row
    # naming the day wherever it changes, as a journal gives it; each row its time.
    first = next((d for d in days if d is not None), None)
    title = f"{story}: {len(records)} updates" + (f", recorded from {first} (UTC)" if first else "")
    table = Table(title=title, title_justify="left")
    table.add_column("v", style="bold", justify="right")
    table.add_column("recorded", style="dim", no_wrap=True)
    table.add_column("happened", no_wrap=True)
    table.add_column("type", style="cyan", no_wrap=True)
    table.add_column("update", overflow="fold")
    shown = first
    for update, day in zip(updates, days, strict=True):
        if day is not None and day != shown:
            shown = day
            table.add_row("", day, "", "", "", style="bold")
        at = update.recordedtime
        table.add_row(
            str(update.version),
            "" if at is None else at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3],
            happened(update),
            update.__struct_config__.tag.removeprefix("dateline."),  # type: ignore[union-attr]
            summarize(update),
        )
    return table


def _day(update: Update) -> str | None:
    at = update.recordedtime
    return None if at is None else f"{at.astimezone(UTC):%Y-%m-%d}"


@click.command(name="log")
@story_argument
@click.option("--from-version", type=click.IntRange(1), default=1, show_default=True)
@click.option("--to-version", type=click.IntRange(1), default=None, help="Inclusive.")
@click.option(
    "--as-of",
    "as_of",
    type=str,
    default=None,
    help="Only what was recorded by then (RFC 3339, e.g. 2019-02-28T13:30:00+07:00).",
)
@click.option("--json", "as_json", is_flag=True, help="The stored records, one JSON per line.")
def log_command(
    story: str, from_version: int, to_version: int | None, as_of: str | None, as_json: bool
) -> None:
    """Print the history of STORY: every accepted update with its version, in log order."""
    if to_version is not None and to_version < from_version:
        raise click.UsageError(f"--to-version {to_version} is before --from-version {from_version}")
    cutoff = parse_when(as_of) if as_of else None
    cfg = settings()

    async def read() -> tuple[list[bytes], int]:
        async with open_log(url, cfg) as log:
            records = await log.read_story_json(
                story, from_version=from_version, to_version=to_version, as_of=cutoff
            )
            return records, 0 if records else await log.version(story)

    with server(cfg) as url:
        records, version = asyncio.run(read())
    if not records and not version:
        raise click.ClickException(f"story {story!r} has no updates in the log")
    if not records:
        raise click.ClickException(
            f"story {story!r} has no updates in this range"
            + (f" recorded by {as_of}" if as_of else "")
            + f"; the log holds its versions 1 to {version}"
        )
    if as_json:
        for raw in records:
            sys.stdout.buffer.write(raw + b"\n")
        return
    Console(soft_wrap=False).print(render(records, story))
