"""`dateline publish`: append NDJSON updates, one result line per update."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import IO

import click
import msgspec

from dateline.cli.common import err, open_log, server, settings
from dateline.store.log import (
    REFUSED,
    AppendFunctionMissing,
    AppendResult,
    Log,
    LogMoving,
    NotReplicated,
)
from dateline_schemas import MAX_BATCH_UPDATES, InvalidUpdate, decode_update
from dateline_schemas.correction import names_another_source

_COLOURS = {"appended": "green", "duplicate": "cyan", "conflict": "yellow"}
REUSED = "of them an id used again for other content"
"""The count of duplicates whose content differs from the original's: the summary says
it after the duplicates' count, and the command exits 1, as for a refusal."""


def read_ndjson(stream: IO[bytes]) -> list[tuple[int, bytes]]:
    """(line number, line) for every non-blank line."""
    return [(n, line.strip()) for n, line in enumerate(stream, 1) if line.strip()]


def describe(line: int, result: AppendResult) -> str:
    colour = "yellow" if result.differs else _COLOURS.get(result.status, "red")
    status = click.style(f"{result.status:<9}", fg=colour)
    head = f"line {line:<4} {status}"
    match result.status:
        case "appended" | "duplicate":
            text = f"{head} {result.subject} v{result.version} at {result.position} ({result.id})"
            return text + (f": {result.reason}" if result.reason else "")
        case "invalid":
            return f"{head} {result.field}: {result.reason}"
        case _:
            return f"{head} {result.subject} ({result.id}): {result.reason}"


async def publish_lines(
    log: Log,
    lines: list[tuple[int, bytes]],
    *,
    batch_size: int,
    atomic: bool,
    pace: float,
    as_json: bool,
    editor: bool = False,
) -> Counter[str]:
    counts: Counter[str] = Counter()
    step = 1 if pace else batch_size
    chunks = [lines[start : start + step] for start in range(0, len(lines), step)]
    batches = ([body for _, body in chunk] for chunk in chunks)
    done = 0
    async for results in log.append_stream(batches, atomic=atomic, editor=editor):
        for (line, _), result in zip(chunks[done], results, strict=True):
            counts[result.status] += 1
            counts[REUSED] += bool(result.differs)
            if as_json:
                doc = {"line": line, **msgspec.to_builtins(result)}
                sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
            else:
                click.echo(describe(line, result))
        sys.stdout.flush()
        done += 1
        if pace:
            await asyncio.sleep(pace)
    return counts


def _naming_another_source(lines: list[tuple[int, bytes]]) -> list[tuple[int, str]]:
    """(line, source) of each update that names another source's update (rule 5); an
    invalid line is the log's to refuse."""
    found = []
    for line, body in lines:
        try:
            update = decode_update(body).update
        except InvalidUpdate:
            continue
        if (source := names_another_source(update)) is not None:
            found.append((line, source))
    return found


@click.command()
@click.argument("file", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="One JSON result object per line.")
@click.option(
    "--atomic",
    is_flag=True,
    help="All or nothing: if any update is refused, none is written (at most 1,000 updates).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_UPDATES),
    default=MAX_BATCH_UPDATES,
    show_default=True,
    help="Updates per append script call.",
)
@click.option(
    "--pace",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds to wait after each update (one update per batch), to watch it unfold.",
)
@click.option(
    "--editor",
    is_flag=True,
    help="Publish with the editor right (rule 5): corrections and retractions may name "
    "another source's updates (target_source); the log records the right.",
)
def publish(
    file: IO[bytes], as_json: bool, atomic: bool, batch_size: int, pace: float, editor: bool
) -> None:
    """Append the NDJSON updates in FILE (or - for stdin) to the log.

    Prints one line per update: appended (story version and log position),
    duplicate (the original's), conflict (expectedversion did not match) or
    invalid (the field and the rule). A duplicate whose content is not the
    original's says what differs: its id was used before, and the log kept that
    update. Exits 1 if any update was refused, or was such a duplicate.

    \b
    Example:
      dateline publish examples/hanoi-summit-2019.ndjson
    """
    lines = read_ndjson(file)
    if atomic and len(lines) > MAX_BATCH_UPDATES:
        raise click.UsageError(
            f"--atomic takes at most {MAX_BATCH_UPDATES} updates; the input has {len(lines)}"
        )
    if not editor and (crossing := _naming_another_source(lines)):
        raise click.UsageError(
            f"rule 5: line {crossing[0][0]} corrects or retracts an update of "
            f"{crossing[0][1]!r}, another source ({len(crossing)} such lines); that needs "
            "the editor right: run again with --editor"
        )
    cfg = settings()

    async def run() -> Counter[str]:
        async with open_log(url, cfg) as log:
            return await publish_lines(
                log,
                lines,
                batch_size=batch_size,
                atomic=atomic,
                pace=pace,
                as_json=as_json,
                editor=editor,
            )

    with server(cfg) as url:
        try:
            counts = asyncio.run(run())
        except AppendFunctionMissing as exc:
            raise click.ClickException(f"{exc}; nothing more was written") from None
        except LogMoving as exc:
            raise click.ClickException(f"the log {exc}; nothing more was written") from None
        except NotReplicated as exc:
            wanted = cfg.min_replicas if cfg.min_replicas >= 0 else "auto"
            raise click.ClickException(
                f"{exc} (DATELINE_MIN_REPLICAS={wanted}, DATELINE_REPLICA_TIMEOUT_MS="
                f"{cfg.replica_timeout_ms}); the lines printed above were confirmed"
            ) from None
    refused = sum(counts[s] for s in REFUSED)
    reused = counts.pop(REUSED, 0)
    parts = ", ".join(
        f"{n} {status}" + (f" ({reused} {REUSED})" if status == "duplicate" and reused else "")
        for status, n in sorted(counts.items())
    )
    err(f"{len(lines)} updates: {parts or 'none'}")
    if refused or reused:
        sys.exit(1)
