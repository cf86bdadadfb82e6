"""`dateline ingest` and `dateline feeds`: the HTTP way in, and who may use it."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import click

from dateline.cli.common import (
    err,
    json_lines,
    on_the_log,
    open_log,
    probe_options,
    redis_ready,
    server,
    servers_reachable,
    settings,
    stop_on_signals,
    story_filters,
)
from dateline.ingest.credentials import Credentials, FeedExists
from dateline.runtime.heap import tune_collector
from dateline.runtime.probes import probes
from dateline.store import refused
from dateline.store.log import Log

T = TypeVar("T")


@click.command(name="ingest")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8001, show_default=True)
def ingest_command(host: str, port: int) -> None:
    """Serve POST /v1/updates in the foreground (CloudEvents, batches, NDJSON)."""
    # Imported here: the HTTP stack costs every other command a third of a second.
    from dateline.ingest.app import create_app  # noqa: PLC0415
    from dateline.web.server import config, serve  # noqa: PLC0415

    cfg = settings()
    with server(cfg) as url:
        asyncio.run(servers_reachable(url))
        err(f"ingest on http://{host}:{port}/v1/updates (OpenAPI: /v1/openapi.json)")
        serve(config(create_app(cfg, url), host=host, port=port))


@click.command(name="validator")
@probe_options
def validator_command(probe_host: str, probe_port: int) -> None:
    """Move updates from feeds' Redis inboxes into the log, in the foreground.

    \b
    A feed appends with any Redis client:
      XADD <prefix>:inbox:<feed> * __data__ '<one CloudEvent as JSON>'
    Valid updates go through the same append path as HTTP; refused ones go to
    <prefix>:rejected with the field and the reason. Reads the inbox of every
    registered feed, and of feeds registered while it runs (within 2 s).
    """
    from dateline.ingest.validator import create_validator, follow_feeds  # noqa: PLC0415

    cfg = settings()

    async def run() -> None:
        # Handlers first: a stop that arrives while it connects ends it cleanly too.
        stop = stop_on_signals()
        if not await servers_reachable(url, None, stop):
            return
        async with open_log(url, cfg) as log:
            runner = await create_validator(
                log.redis,
                log.keys,
                f"{socket.gethostname()}-{os.getpid()}",
                min_replicas=log.min_replicas,
                replica_timeout_ms=log.replica_timeout_ms,
            )
            if not runner.streams:
                err("validator: no feeds registered yet (dateline feeds add NAME ...); waiting")
            else:
                err(f"validator: {len(runner.streams)} inboxes; Ctrl-C stops")
            follow = asyncio.create_task(follow_feeds(runner, log.redis, cfg.prefix, stop))
            tune_collector()
            try:
                async with probes(probe_host, probe_port, redis_ready(log.redis)):
                    await runner.run(stop)
            finally:
                stop.set()
                await follow

    with server(cfg) as url:
        asyncio.run(run())


@click.group()
def feeds() -> None:
    """Feed credentials: a bearer token per feed, bound to its CloudEvents source."""


def _run_credentials(work: Callable[[Credentials], Awaitable[T]]) -> T:
    return on_the_log(lambda log: work(Credentials(log.redis, log.keys.prefix)))


@feeds.command(name="add")
@click.argument("name")
@click.option("--source", required=True, help="The CloudEvents source it publishes as.")
@story_filters
@click.option(
    "--editor",
    is_flag=True,
    help="The editor right (rule 5): its corrections and retractions may name another "
    "source's updates, with target_source.",
)
def feeds_add(
    name: str, source: str, prefixes: tuple[str, ...], types: tuple[str, ...], editor: bool
) -> None:
    """Register feed NAME and print its token. It is shown this once and stored hashed."""
    try:
        token = _run_credentials(
            lambda c: c.add(name, source, list(prefixes), list(types), editor=editor)
        )
    except (FeedExists, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)
    err(f"feed {name!r} publishes as {source!r}; keep the token: it is not shown again")


@feeds.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a feed, a line each.")
def feeds_list(as_json: bool) -> None:
    """Every feed, its source and limits (never its token)."""
    found = _run_credentials(lambda c: c.feeds())
    if as_json:  # a Feed holds no token, nor its digest
        json_lines(found)
        return
    for f in found:
        limits = ", ".join([*(f"stories {p}*" for p in f.story_prefixes), *f.types]) or "any"
        state = "REVOKED" if f.revoked else "active"
        right = "editor" if f.editor else "-"
        click.echo(f"{f.name}\t{f.source}\t{state}\t{right}\t{limits}")


@feeds.command(name="revoke")
@click.argument("name")
def feeds_revoke(name: str) -> None:
    """Revoke NAME's token: its next request gets 401."""
    if not _run_credentials(lambda c: c.revoke(name)):
        raise click.ClickException(f"no feed named {name!r}")
    click.echo(f"feed {name!r} revoked")


@feeds.command(name="refused")
@click.argument("name", required=False)
@click.option(
    "--limit", type=click.IntRange(1), default=20, show_default=True, help="At most this many."
)
@click.option(
    "--since",
    "since_min",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Only those of the last this many minutes.",
)
@click.option("--record", is_flag=True, help="Print each entry's text too (its first 4 KiB).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a refusal, a line each.")
def feeds_refused(
    name: str | None, limit: int, since_min: float | None, record: bool, as_json: bool
) -> None:
    """What the validator refused from feeds' Redis inboxes (of feed NAME, or of all),
    newest first: when, the feed, the inbox entry, the update's id and story, the field
    and the reason. An inbox's feed is not answered: this is where it learns why. The
    log keeps about the last 10,000 refusals (<prefix>:rejected)."""
    since_ms = int((time.time() - since_min * 60) * 1000) if since_min else 0

    async def read(log: Log) -> tuple[list[refused.Refusal], int]:
        found = await refused.refusals(
            log.redis,
            log.keys.prefix,
            feed=name,
            limit=limit,
            since_ms=since_ms,
            with_record=record,
        )
        return found, await refused.counted(log.redis, log.keys.prefix)

    found, held = on_the_log(read)
    if as_json:
        json_lines(found)
        return
    whose = f" of feed {name!r}" if name else ""
    if not found:
        within = f" in the last {since_min:g} min" if since_min else ""
        click.echo(f"nothing refused{whose}{within} ({held:,} refusals held in all)")
        return
    for r in found:
        when = datetime.fromtimestamp(r.ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        update = f"{r.id} ({r.subject})" if r.id and r.subject else (r.id or "-")
        click.echo(f"{when}\t{r.feed}\t{r.entry}\t{update}\t{r.field}\t{r.reason}")
        if r.record is not None:
            cut = f" (the first {refused.KEEP_BYTES:,} of {r.size:,} bytes)" if r.truncated else ""
            click.echo(f"\t{r.record}{cut}")
    more = "" if len(found) < limit else f"; --limit {limit * 5} for more"
    err(f"{len(found)} refusals{whose}, newest first ({held:,} held in all{more})")
