"""`dateline projector` and `dateline story`: run the projections, read one story's state."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import click
import msgspec

from dateline.cli.common import (
    err,
    open_log,
    open_views,
    probe_options,
    redis_ready,
    run_on_uvloop,
    servers_reachable,
    settings,
    stop_on_signals,
    stores,
    story_argument,
)
from dateline.cli.log_cmd import parse_when
from dateline.domain import project
from dateline.projector.app import create_app
from dateline.query.views import view_of
from dateline.runtime import DeadLetters
from dateline.runtime.heap import tune_collector
from dateline.runtime.probes import probes
from dateline.store.layout import group_of
from dateline.store.readmodels import active_version
from dateline_schemas import decode_records


@click.command(name="projector")
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    help="Updates a cycle at most, over all partitions (its states are in memory at once).",
)
@probe_options
def projector_command(batch: int, probe_host: str, probe_port: int) -> None:
    """Run the projector in the foreground: the log's partitions into the read models.

    Takes leases on its share of the partitions: all of them alone; with others
    running, the partitions divided by the live processes, rounded up (start more
    to use more cores; `dateline status` lists them). A process takes over a dead
    one's partitions when its leases run out (DATELINE_LEASE_TTL_MS, 10 s). It
    re-reads its own pending updates first, then follows the log. Ctrl-C stops
    after the batch in hand and hands its partitions to the others at once.
    """
    cfg = settings()

    async def run() -> None:
        # Handlers first: a stop that arrives while it connects ends it cleanly too.
        stop = stop_on_signals()
        if not await servers_reachable(url, found.views_url, stop):
            return
        app = await create_app(found, url, batch=batch)
        if stop.is_set():
            await app.client.aclose()
            if app.views is not None:
                await app.views.aclose()
            return
        err(
            f"projector {app.runner.config.consumer}: group {app.runner.config.group}; Ctrl-C stops"
        )
        tune_collector()
        async with probes(probe_host, probe_port, redis_ready(app.client, app.views)):
            await app.run(stop)

    with stores(cfg) as (url, found):
        run_on_uvloop(run())


@click.command(name="story")
@story_argument
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="What the desk knew at this recorded time (RFC 3339 with offset).",
)
@click.option(
    "--at-version",
    type=click.IntRange(1),
    default=None,
    help="What the desk knew after this many updates.",
)
@click.option("--json", "as_json", is_flag=True, help="The state as JSON.")
def story_command(story: str, as_of: str | None, at_version: int | None, as_json: bool) -> None:
    """Print STORY's state, folded from its history in the log (not from a read model).

    Now (without --as-of or --at-version) it also says where the read models hold the
    story back, if the projector parked one of its updates: `parked_at`, as the API.
    """
    if as_of and at_version:
        raise click.UsageError("give --as-of or --at-version, not both")
    cutoff = parse_when(as_of) if as_of else None
    cfg = settings()

    async def read() -> tuple[list[bytes], str | None]:
        # As of a moment or a version, the log alone answers; now, the read models.
        async with open_log(url, found) as log, open_views(found, log.redis) as views:
            records = await log.read_story_json(story, to_version=at_version, as_of=cutoff)
            if as_of or at_version:
                return records, None
            version = await active_version(views, cfg.prefix)
            parked = await DeadLetters(log.redis, cfg.prefix, group_of(version)).parked()
            return records, parked.get(story)

    with stores(cfg) as (url, found):
        records, parked_at = asyncio.run(read())
    if not records:
        when = f" as of {as_of}" if as_of else ""
        raise click.ClickException(f"story {story!r} has no updates{when} in the log")
    try:
        state = project(story, decode_records(records))
    except Exception as exc:  # a projection bug: name it; `dlq show` has the traceback
        raise click.ClickException(
            f"story {story!r} cannot be folded from its history: the projection raised "
            f"{exc!r}; the projector parks the update that does this: "
            f"`dateline dlq show {story}`"
        ) from exc
    # What GET /v1/stories/{id} shows: no projector bookkeeping; overdue by then, or now.
    doc = view_of(state, cutoff or datetime.now(UTC))
    doc.parked_at = parked_at
    if parked_at:
        err(
            f"{story}: the read models hold this story back at {parked_at}, where the "
            f"projector parked an update; see `dateline dlq show {story}`"
        )
    if as_json:
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
        return
    click.echo(msgspec.json.format(msgspec.json.encode(doc), indent=2).decode())
