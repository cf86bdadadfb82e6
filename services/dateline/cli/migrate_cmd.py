"""`dateline migrate`: move the log to another server, a cluster, or another partition count."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import IO

import click
import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from dateline.cli.common import (
    err,
    open_log,
    optional_output,
    server,
    settings,
    without_password,
)
from dateline.cli.ops_cmd import Rate
from dateline.projector.replay import total_updates
from dateline.runtime import status
from dateline.store import migrate, owed
from dateline.store.config import Settings
from dateline.store.connection import UNREACHABLE, is_cluster, open_client
from dateline.store.layout import Keys, deliveries_held_key
from dateline.store.log import CLUSTER_PARTITIONS, Log, PartitionMismatch
from dateline.store.replies import as_text_or_none
from dateline.store.seal import seal_log, sealing_key


@click.command(name="migrate")
@click.option("--to", "to_url", default=None, help="The target: a server or any cluster node.")
@click.option(
    "--partitions",
    type=click.IntRange(1, 1024),
    default=None,
    help="The target's partition count (default: the source's; 48 on a cluster).",
)
@click.option(
    "--positions",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write each update's old and new position to this file (TSV), for anything "
    "that holds positions (a dashboard's Last-Event-ID, notes of dead letters).",
)
@click.option(
    "--release",
    is_flag=True,
    help="Only lift the freeze an interrupted run left on this log (appends resume here).",
)
def migrate_command(
    to_url: str | None, partitions: int | None, positions: Path | None, release: bool
) -> None:
    """Move this log (REDIS_URL, or the embedded server) to another server or cluster.

    \b
    1. Freezes the log: ingest and the validator refuse appends (503, retried by feeds).
    2. Copies every update: its history, version, recorded time and dedup entry; its
       position mapped to where it lands (with --partitions, stories move between
       partitions). Feeds, readers, subscriptions (with their signing secrets) and
       the feeds' Redis inboxes come along, and what each subscription's receiver
       had not acknowledged goes into its outbox there; the rest of the copied
       history is not sent again.
    3. Checks the copy: each story's count and a digest of its records.
    4. Seals the target's log where there is a seal key (DATELINE_SEAL_KEY): its
       stories' lists are written sealed in step 2 and checked in step 3.
    5. Marks this log as moved. Restart every service with REDIS_URL=<target>; the ones
       still on this server answer feeds 503, saying where the log went.
    Read models are not copied: a projector on the target rebuilds them from the log.
    A failed copy or check lifts the freeze and leaves the target to be cleared.
    """
    if to_url is None and not release:
        raise click.UsageError("--to: the server or cluster node to move the log to")
    cfg = settings()
    with server(cfg) as url, optional_output(positions) as out:
        asyncio.run(_migrate(cfg, url, to_url or "", partitions, out, release))


async def _migrate(
    cfg: Settings,
    url: str,
    to_url: str,
    partitions: int | None,
    positions: IO[str] | None,
    release: bool,
) -> None:
    async with open_log(url, cfg) as source:
        if release:
            lifted = await migrate.release(source.redis, source.keys)
            click.echo(f"freeze lifted from {lifted} of {source.keys.partitions} partitions")
            return
        if (going := await migrate.frozen_to(source.redis, source.keys)) is not None:
            raise click.ClickException(
                f"this log is already being moved, or has moved, to {going}; "
                "`dateline migrate --release` lifts the freeze an interrupted run left"
            )
        try:
            target = await open_client(to_url)
        except UNREACHABLE as exc:
            raise click.ClickException(f"the target {without_password(to_url)}: {exc}") from None
        # To a cluster: slot tags, and its default count unless one is asked for.
        cluster = is_cluster(target)
        count = partitions or (CLUSTER_PARTITIONS if cluster else source.keys.partitions)
        to = Keys(cfg.prefix, count, slotted=cluster)
        try:
            feeds = await migrate.feed_names(source.redis, cfg.prefix)
            await migrate.check_empty(target, to, migrate.copied_streams(to.prefix, feeds, True))
            await Log(target, to).check_partitions()  # the target's config: its count
            report = await _move(cfg, source, target, to, to_url, positions)
        except (migrate.TargetNotEmpty, PartitionMismatch) as exc:
            raise click.ClickException(str(exc)) from None
        except UNREACHABLE as exc:
            raise click.ClickException(f"a server went away: {exc}") from None
        finally:
            await target.aclose()
    _say(report, url, to_url)


async def _move(
    cfg: Settings,
    source: Log,
    target: aioredis.Redis,
    to: Keys,
    to_url: str,
    positions: IO[str] | None,
) -> migrate.MigrateReport:
    started = time.monotonic()
    total = await total_updates(source.redis, source.keys)
    shown = without_password(to_url)
    key = await sealing_key(target, cfg.seal())
    await migrate.freeze(source.redis, source.keys, migrate.frozen_detail(shown), shown)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate())
    fanned = await migrate.fans_out(source.redis, source.keys)
    if fanned:
        await _deliveries_held(source, shown)
    # Frozen: the whole log is the cut. What each subscription is owed, to put back there.
    dues = await owed.dues(source.redis, source.keys, None) if fanned else []
    placing = owed.Placing(owed.positions(dues), dues)
    try:
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task("copying", total=total)
            checks = await migrate.copy_log(
                source.redis,
                source.sealing,
                target,
                to,
                progress=lambda n: bar.advance(task, n),
                positions=positions,
                seal_key=key,
                placed=placing.placed if dues else None,
            )
            settings_copied = await migrate.copy_settings(source.redis, target, to.prefix)
            queued = parked = 0
            gone: list[str] = []
            if lost := placing.missing():
                err(
                    f"{len(lost)} updates the subscriptions were owed are not in the log "
                    f"({', '.join(lost[:5])}): not put in their outboxes there"
                )
            for due in dues:
                put = await placing.put_back(target, to, due.sub.name, due.owed(), due.parked)
                if put is None:
                    gone.append(due.sub.name)
                else:
                    queued, parked = queued + put[0], parked + put[1]
            delivery = await migrate.place_delivery(source.redis, source.keys, target, to)
            bar.update(task, description="checking")
            wrong = await migrate.check(target, to, checks, seal_key=key)
            report = migrate.MigrateReport(
                updates=sum(c.count for c in checks.values()),
                stories=len(checks),
                partitions=(source.keys.partitions, to.partitions),
                mismatched=wrong,
                settings=settings_copied,
                delivery=delivery,
                queued=queued,
                parked=parked,
                gone=gone,
            )
            if not wrong and key is not None:  # its lists written sealed: marked so
                await seal_log(target, to, key, listed=True)
                report.sealed = True
    except BaseException:
        await migrate.release(source.redis, source.keys)
        err("the freeze is lifted: this log takes appends again; clear the target before retrying")
        raise
    if report.mismatched:
        await migrate.release(source.redis, source.keys)
        report.seconds = time.monotonic() - started
        return report
    await migrate.freeze(source.redis, source.keys, migrate.moved_detail(shown), shown)
    report.seconds = time.monotonic() - started
    return report


HOLD_WAIT_S = 15.0
"""How long a move waits for a running delivery service to say it holds every send."""


async def _deliveries_held(source: Log, to: str) -> bool:
    """Wait until a delivery service running on this log says it holds every send for
    this move, its sends under way ended and acknowledged (it reads the freeze once a
    second, `deliver/app.py`): what is owed is read after, so no receiver gets from the
    target what the source sent meanwhile. True at once when none runs."""
    alive = await status.delivering(source.redis, source.keys)
    if not alive:
        return True
    err(f"waiting for deliver ({', '.join(alive)}) to hold its sends")
    key = deliveries_held_key(source.keys.prefix)
    for _ in range(int(HOLD_WAIT_S * 10)):
        if as_text_or_none(await source.redis.get(key)) == to:
            return True
        await asyncio.sleep(0.1)
    err(
        f"deliver did not say it holds its sends within {HOLD_WAIT_S:g} s: a receiver may "
        "get again, from the target, what it sends from here meanwhile (with its webhook-id)"
    )
    return False


def _say(report: migrate.MigrateReport, url: str, to_url: str) -> None:
    if report.mismatched:
        err("the copy does not match the log; the freeze is lifted and this log takes appends")
        for line in report.mismatched[:20]:
            err(f"  {line}")
        sys.exit(1)
    before, after = report.partitions
    src, dst = without_password(url), without_password(to_url)
    click.echo(
        f"moved {report.updates} updates of {report.stories} stories from {src} to "
        f"{dst} ({before} -> {after} partitions) in {report.seconds:.1f} s; "
        f"checked: each story's count and digest match; {report.settings} feed, reader and "
        "subscription settings and the feeds' inboxes copied; "
        + ("sealed" if report.sealed else "not sealed (no key, or no functions there)")
    )
    if report.delivery:
        click.echo(
            f"delivery: {report.queued} updates the subscriptions' receivers had not yet "
            f"acknowledged are in their outboxes there, {report.parked} in their dead "
            "letters; the rest of the copied history is not sent again. A deliver still "
            "running here holds its sends"
        )
    if report.gone:
        click.echo(
            f"delivery: {', '.join(report.gone)}: removed while the log was copied; "
            "nothing put in an outbox for it there"
        )
    click.echo(
        f"next: restart ingest, the validator, the projector, query and deliver with "
        f"REDIS_URL={without_password(to_url)}; the ones still on this server answer feeds 503"
    )
