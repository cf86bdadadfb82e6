"""`dateline dlq`, `dateline replay`, `dateline status`: what on-call runs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import click
import msgspec
import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from dateline.cli.common import (
    StoryId,
    err,
    open_log,
    open_views,
    parked_story_argument,
    settings,
    stores,
    story_argument,
)
from dateline.projector.ops import rebuild_story, redrive
from dateline.projector.replay import (
    ReplayFailed,
    StoreRestarted,
    WorkerDied,
    Workers,
    drop_version,
    rebuild_all,
    total_updates,
)
from dateline.runtime import DeadLetters, catchup, status
from dateline.runtime.heap import tune_collector
from dateline.store.backup import Taken
from dateline.store.config import Settings
from dateline.store.deadletters import REDRIVE_ASKED
from dateline.store.disk import describe
from dateline.store.layout import DELIVER_GROUP, group_of, is_projection_group
from dateline.store.log import Log
from dateline.store.readmodels import SHAPE, ReadModels, active_version, open_models
from dateline.store.seal import SealReport, seal_if_supported
from dateline.store.subscriptions import Subscriptions

T = TypeVar("T")


@dataclass(frozen=True)
class _Projection:
    """What a command on the active projection works with."""

    url: str
    log: Log
    models: ReadModels
    dead: DeadLetters
    views: aioredis.Redis
    """The store of read models: the log's server, or one of their own."""
    views_url: str | None
    """Its URL, if it is not the log's server."""

    @property
    def apart(self) -> aioredis.Redis | None:
        """The store of read models if apart from the log's server, else None."""
        return None if self.views_url is None else self.views


@asynccontextmanager
async def _projection(url: str, cfg: Settings) -> AsyncIterator[_Projection]:
    async with open_log(url, cfg) as log, open_views(cfg, log.redis) as views:
        version = await active_version(views, cfg.prefix)
        yield _Projection(
            url,
            log,
            await open_models(views, log.keys, version),
            DeadLetters(log.redis, cfg.prefix, group_of(version)),
            views,
            cfg.views_url,
        )


def _run(work: Callable[[_Projection], Awaitable[T]]) -> T:
    """`work` on the active projection, with the log and the store of read models open."""
    cfg = settings()

    async def go() -> T:
        async with _projection(url, found) as projection:
            return await work(projection)

    with stores(cfg) as (url, found):
        return asyncio.run(go())


@click.group()
def dlq() -> None:
    """Parked updates: an update whose projection kept failing, and its story's later ones."""


_GROUP = click.option(
    "--group",
    default=None,
    help="Another consumer group's dead letters: a kit app's (dateline.kit), or `deliver`'s "
    "fan-out. Default: the active projection's.",
)


def _dead(dead: DeadLetters, group: str | None) -> DeadLetters:
    return dead if group is None else DeadLetters(dead.client, dead.prefix, group)


@dlq.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@_GROUP
def dlq_list(as_json: bool, group: str | None) -> None:
    """Every parked update, oldest first: story, entry, error; and a kit app's redrives
    not served yet, or whose failure nobody has read."""

    async def read(dead: DeadLetters) -> tuple[list[tuple[str, dict[str, str]]], dict[str, str]]:
        return await dead.entries(), await dead.redrives()

    entries, redrives = _run(lambda p: read(_dead(p.dead, group)))
    for story, state in redrives.items():
        said = "asked, not served yet" if state == REDRIVE_ASKED else f"stopped at {state}"
        err(f"redrive of {story}: {said}")
    if as_json:
        for eid, doc in entries:
            doc.pop("record", None)
            sys.stdout.write(msgspec.json.encode({"id": eid, **doc}).decode() + "\n")
        return
    if not entries:
        click.echo("no parked updates")
        return
    table = Table(title=f"{len(entries)} parked updates")
    for col in ("dead letter", "story", "entry", "error"):
        table.add_column(col, overflow="fold")
    for eid, doc in entries:
        error = doc["error"] if not doc.get("behind") else f"behind {doc['behind']}"
        table.add_row(eid, doc["story"], f"{doc['partition']}:{doc['entry']}", error)
    Console().print(table)


@dlq.command(name="show")
@parked_story_argument
@_GROUP
def dlq_show(story: str, group: str | None) -> None:
    """STORY's parked updates in full: the record, the error and its traceback."""
    entries = _run(lambda p: _dead(p.dead, group).entries(story))
    if not entries:
        raise click.ClickException(f"story {story!r} has no parked updates")
    for eid, doc in entries:
        click.echo(click.style(f"{eid}  entry {doc['partition']}:{doc['entry']}", bold=True))
        click.echo(f"error: {doc['error']}")
        if doc.get("behind"):
            click.echo(f"parked behind: {doc['behind']}")
        if doc.get("traceback"):
            click.echo(doc["traceback"].rstrip())
        click.echo(f"record: {doc['record']}\n")


@dlq.command(name="redrive")
@story_argument
@click.option(
    "--group",
    default=None,
    help="A kit app's group (dateline.kit): the running app handles STORY's parked updates "
    "again; `deliver`: the delivery service sends them to the subscriptions that missed "
    "them. Default: the active projection's, which rebuilds STORY from the log.",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="With --group: seconds to wait for the app to say how it went.",
)
def dlq_redrive(story: str, group: str | None, wait_s: float) -> None:
    """After the fix: let STORY's parked updates flow again, in log order.

    The projection's: STORY is rebuilt from the log and unparked. A kit app's
    (--group): the app of that group, which must be running, handles the story's
    parked updates again, in log order, and unparks the story if they all pass; if one
    fails again, those before it stay handled and the story stays parked behind it.
    The fan-out's (--group deliver): the delivery service puts them in the outboxes of
    the subscriptions that did not get them, once each; they are delivered from there.
    """

    async def work(p: _Projection) -> str:
        dead = p.dead
        if group is None or group == dead.group:
            if not await dead.holds(story):
                raise click.ClickException(
                    f"story {story!r} is not parked: nothing to redrive (`dateline dlq "
                    f"list` lists those that are; `dateline replay stories --story "
                    f"{story}` rebuilds one)"
                )
            version, dropped = await redrive(p.log, p.models, dead, story, p.apart)
            return f"{story}: rebuilt to version {version}; released {dropped} parked updates"
        if is_projection_group(group):
            raise click.ClickException(
                f"{group} is not the active projection's group ({dead.group}): readers do "
                "not see its read models. Leave out --group to redrive the active one's."
            )
        return await _kit_redrive(DeadLetters(dead.client, dead.prefix, group), story, wait_s)

    click.echo(_run(work))


async def _kit_redrive(dead: DeadLetters, story: str, wait_s: float) -> str:
    """Ask the kit app of `dead.group` to redrive `story`; wait for it to say how it went."""
    asked = await dead.ask_redrive(story)
    if not asked:
        raise click.ClickException(f"story {story!r} has no parked updates in group {dead.group!r}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while (state := await dead.redrive_state(story)) == REDRIVE_ASKED:
        if loop.time() >= deadline:
            raise click.ClickException(
                f"{story}: asked group {dead.group!r} to redrive {asked} parked updates, and "
                f"no app of the group took it up within {wait_s:g} s. It stays asked: the "
                "group's kit app (dateline.kit) redrives it on its next turn once it runs."
            )
        await asyncio.sleep(0.1)
    if state is not None:
        await dead.forget_redrive(story)
        raise click.ClickException(
            f"{story}: the redrive stopped at {state}. The updates before it were handled; "
            f"the story stays parked (`dateline dlq show {story} --group {dead.group}`)."
        )
    return f"{story}: group {dead.group} handled its {asked} parked updates; the story flows again"


@dlq.command(name="discard")
@parked_story_argument
@click.option("--yes", is_flag=True, help="Drop them without asking.")
@_GROUP
def dlq_discard(story: str, yes: bool, group: str | None) -> None:
    """Unpark STORY and drop its dead letters WITHOUT applying them.

    The log keeps the updates: the next rebuild of the projection applies them.
    Use redrive unless they can never be projected. The fan-out's (--group deliver):
    the subscriptions that missed them are not sent them.
    """

    async def parked(p: _Projection) -> int:
        dead = _dead(p.dead, group)
        if not await dead.holds(story):
            raise click.ClickException(
                f"story {story!r} has no parked updates in group {dead.group!r} "
                "(`dateline dlq list`)"
            )
        return len(await dead.entries(story))

    held = _run(parked)  # asked only about what there is
    if not yes:
        click.confirm(
            f"Drop {story}'s {held} parked updates and unpark it, without applying them?",
            abort=True,
        )

    async def work(p: _Projection) -> int:
        dead = _dead(p.dead, group)
        fanned = dead.group == DELIVER_GROUP
        missed = [x.ref for x in await dead.letters(story)] if fanned else []
        dropped = await dead.release(story)
        # After the letters: a crash between leaves a note that says "missed" too long,
        # never letters that a redrive would release without sending.
        await Subscriptions(p.log.redis, p.log.keys).forget_held(missed)
        return dropped

    click.echo(f"{story}: dropped {_run(work)} parked updates")


class Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        # The average since the start: worker processes report a job at a time, and
        # rich's recent-window speed reads those bursts as rates they never had.
        elapsed = task.finished_time or task.elapsed
        speed = task.completed / elapsed if elapsed else None
        return Text(f"{speed:,.0f} updates/s" if speed else "- updates/s", style="cyan")


@click.command()
@click.argument("projection", type=click.Choice(["stories"]))
@click.option("--story", type=StoryId(), default=None, help="Rebuild only this story, in place.")
@click.option("--keep-old", is_flag=True, help="Keep the old version's keys after the switch.")
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=os.cpu_count() or 1,
    show_default="this machine's cores",
    help="Worker processes that fold stories (used from 300,000 updates up).",
)
def replay(projection: str, story: str | None, keep_old: bool, processes: int) -> None:
    """Rebuild PROJECTION from the log.

    \b
    With --story: that story, in place (what `dlq redrive` does too).
    Without: blue/green. The next version is built beside the one serving, from
    every story's history; it catches up with what was appended meanwhile; then
    one SET switches readers and running projectors to it, and the old version
    is deleted once no projector holds it.
    """
    if story:
        rebuilt = _run(lambda p: rebuild_story(p.log, p.models, story, p.apart))
        if rebuilt.forgotten:
            click.echo(
                f"{projection}/{story}: the log has no update of this story; the read "
                "models held an empty one (an older `replay --story` wrote one for any id "
                "asked), and no longer do"
            )
        elif not rebuilt.version:
            raise click.ClickException(
                f"the log has no update of story {story!r}: nothing to rebuild"
            )
        else:
            click.echo(f"{projection}/{story}: rebuilt from the log to version {rebuilt.version}")
        return

    async def work(p: _Projection) -> str:
        log = p.log
        tune_collector()  # it folds in this process too, below the workers' threshold
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            Rate(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task(
                f"rebuilding {projection}", total=await total_updates(log.redis, log.keys)
            )
            try:
                result = await rebuild_all(
                    log,
                    log.keys,
                    lambda n: bar.advance(task, n),
                    workers=Workers(p.url, processes, views_url=p.views_url),
                    views=p.apart,
                )
            except ReplayFailed as exc:
                for failed_story, error in sorted(exc.failed.items()):
                    err(f"{failed_story}: {error}")
                raise click.ClickException(str(exc)) from None
            except (WorkerDied, StoreRestarted) as exc:
                raise click.ClickException(str(exc)) from None
            bar.update(task, completed=bar.tasks[0].total)
        lines = [
            f"{projection}: {result.old} -> {result.new}: {result.stories} stories, "
            f"{result.updates} updates from histories, {result.caught_up} caught up; "
            f"switched"
        ]
        if not keep_old:
            grace_s = 2 * settings().lease_ttl_ms / 1000
            dropped = await drop_version(
                log.redis, log.keys, result.old, grace_s=grace_s, views=p.apart
            )
            lines.append(f"dropped {result.old}: {dropped} keys")
        return "\n".join(lines)

    click.echo(_run(work))


@click.command(name="status")
@click.option(
    "--json", "as_json", is_flag=True, help="The report as JSON (with --watch: a line each)."
)
@click.option(
    "--watch",
    is_flag=True,
    help="Read the report every --every seconds and print a line each time: how far "
    "behind the projection is, the updates appended and projected a second, and whether "
    "it is catching up (and about when it will be done), holding, falling behind or "
    "stalled, over the last 10 s. Ctrl-C ends it.",
)
@click.option(
    "--every",
    type=click.FloatRange(min=0.5),
    default=2.0,
    show_default=True,
    help="Seconds between reports, with --watch.",
)
@click.option(
    "--times",
    type=click.IntRange(min=1),
    default=None,
    help="With --watch, stop after this many reports (default: until Ctrl-C).",
)
def status_command(as_json: bool, watch: bool, every: float, times: int | None) -> None:
    """Per partition: log length, checkpoint, lag (updates, seconds), pending, lease holder;
    the group's live processes; parked updates; each server's AOF (its size, a rewrite
    under way) and the stalls its latency monitor logged (fsyncs, forks, slow commands).

    \b
    With --watch, a line every few seconds instead, for a projection that is behind:
      08:41:07Z  catching up: 18,000 behind; appended 500/s, projected 3,500/s; about 6 s to go
    """

    async def work(p: _Projection) -> status.Status:
        return await status.report(p.log.redis, p.log.keys, p.models, p.apart)

    if watch:
        with suppress(KeyboardInterrupt):  # how a watch ends
            _run(lambda p: _watch(p, every, times, as_json))
        return
    report = _run(work)
    if as_json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
        return
    proj = report.projection
    versions = ", ".join(f"{v} shape {proj.shapes[v]}" for v in proj.versions)
    table = Table(
        title=f"projection {proj.active} (versions: {versions}); group {report.group}",
        title_justify="left",
    )
    for col in ("partition", "log length", "checkpoint", "lag", "lag s", "pending", "lease"):
        table.add_column(col, justify="right" if col not in ("checkpoint", "lease") else "left")
    for row in report.partitions:
        lag = row.lag if row.lag_exact else f">={row.lag}"
        cells = (row.partition, row.length, row.checkpoint, lag, row.lag_seconds)
        table.add_row(*(str(c) if c is not None else "-" for c in (*cells, row.pending, row.lease)))
    Console().print(table)
    if (built := proj.shapes.get(proj.active or "", SHAPE)) < SHAPE:
        # The projector logs it once at its start; an SRE reads it here.
        click.echo(
            f"read models of {proj.active}: shape {built}, older than this release's "
            f"{SHAPE}; readers do without what it lacks (the boards are read whole for a "
            "page) until `dateline replay stories`"
        )
    alive = report.processes
    names = f" ({', '.join(alive)})" if alive else ""
    click.echo(f"processes of the group: {len(alive)}{names}")
    dl = report.dead_letters
    click.echo(f"parked: {dl.parked_updates} updates in {dl.parked_stories} stories")
    dv = report.deliveries
    if dv is not None and (dv.subscriptions or dv.fanout_parked):
        lag = "unknown" if dv.fanout_lag is None else dv.fanout_lag
        click.echo(
            f"subscriptions: {len(dv.subscriptions)}; not yet fanned out {lag}; parked at "
            f"receivers {sum(s.parked for s in dv.subscriptions)}; parked in the fan-out "
            f"{dv.fanout_parked}"
            + (" (`dateline dlq list --group deliver`)" if dv.fanout_parked else "")
            + (
                f"; sent by {', '.join(dv.processes)}"
                if dv.processes
                else "; NO delivery service running (`dateline deliver`): nothing is sent"
            )
            + (f"; standing by: {', '.join(dv.standbys)}" if dv.standbys else "")
        )
    if report.moving:
        err(f"the log {report.moving}")
    sealed = sum(row.sealed_after is not None for row in report.partitions)
    click.echo(
        f"sealed: {sealed} of {len(report.partitions)} partitions"
        + ("" if sealed == len(report.partitions) else " (`dateline seal` seals the log)")
    )
    for found in report.disks:
        for line in describe(found, time.time()):
            click.echo(line)
    click.echo(_last_backup(report.backup, time.time()))
    if report.replay:
        click.echo(_rebuild(report.replay))


async def _watch(p: _Projection, every: float, times: int | None, as_json: bool) -> None:
    """`dateline status --watch`: a line a report, until `times` or Ctrl-C (or SIGTERM).

    Ctrl-C sets an event the watch waits on beside its sleep and its report, rather than
    cancelling whatever the loop runs at that instant (`asyncio.run`'s way): a watch
    once did not end within 30 s of Ctrl-C (a full run of the suite, just after an
    outage; the cause not found: the same sequence, tried 270 times before this change
    and 300 after it, ended every time). A second Ctrl-C interrupts at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)  # the next Ctrl-C: KeyboardInterrupt

    loop.add_signal_handler(signal.SIGINT, stopping)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    samples: list[catchup.Sample] = []
    n = 0
    while times is None or n < times:
        if n and not await _unless(stop, asyncio.sleep(every, True)):
            return
        n += 1
        try:
            report = await _unless(stop, status.report(p.log.redis, p.log.keys, p.models, p.apart))
        except Exception as exc:  # an outage is what a watch is kept open through
            from dateline.cli.trouble import said  # noqa: PLC0415 - only when it failed

            if (trouble := said(exc)) is None:
                raise
            _say_at(time.time(), f"no report: {trouble}; asking again in {every:g} s", as_json)
            continue
        if report is None:
            return
        rows = report.partitions
        now = time.time()
        samples.append(
            catchup.sample(
                now,
                [r.length for r in rows],
                [r.checkpoint for r in rows],
                [r.lag for r in rows],
                all(r.lag_exact for r in rows),
            )
        )
        del samples[: -int(catchup.WINDOW_S / every) - 2]  # what the window needs
        found = catchup.pace(samples)
        oldest = max((r.lag_seconds for r in rows), default=0.0)
        if as_json:
            _json_line({"at": now, "sample": samples[-1], "pace": found, "oldest_s": oldest})
            continue
        last = samples[-1]
        line = (
            catchup.described(found)
            if found is not None
            else f"{'' if last.exact else 'at least '}{last.lag:,} behind; the pace from the "
            "next report"
        )
        if oldest:
            line += f" (oldest waiting {oldest:g} s)"
        if found is not None and found.verdict is catchup.Verdict.STALLED and not report.processes:
            line += "; no projector process is running (`dateline projector`)"
        if report.dead_letters.parked_updates:
            line += f"; {report.dead_letters.parked_updates} parked (`dateline dlq list`)"
        if report.replay:
            line += f"; {_rebuild(report.replay)}"
        _say_at(now, line, as_json=False)


async def _unless(stop: asyncio.Event, step: Awaitable[T]) -> T | None:
    """`step`'s result (or its failure), or None if `stop` is set first: the step is then
    cancelled and waited for, and what it raised on the way out is not asked for (the
    watch is ending; a failure it had, the next report would have said)."""
    doing = asyncio.ensure_future(step)
    asked = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((doing, asked), return_when=asyncio.FIRST_COMPLETED)
    finally:
        asked.cancel()
    if doing.done():
        return doing.result()
    doing.cancel()
    await asyncio.wait((doing,))
    if not doing.cancelled():
        doing.exception()  # retrieved: asyncio would log it as never retrieved
    return None


def _rebuild(progress: dict[str, str]) -> str:
    """A rebuild's progress as `dateline replay` writes it, for the hour after it began:
    what on call, watching from another terminal, asks of it."""
    done, total = int(progress.get("done", 0)), int(progress.get("total", 0))
    rate, state = float(progress.get("rate") or 0), progress.get("state", "")
    line = f"rebuild {progress.get('version', '?')}: {done:,} of {total:,} updates"
    if total:
        line += f" ({100 * done / total:.0f}%)"
    line += f", {rate:,.0f}/s, {state}"
    if state == "rebuilding" and rate > 0 and total > done:
        line += f", about {catchup.spoken((total - done) / rate)} to go"
    return line


def _say_at(now: float, line: str, as_json: bool) -> None:
    if as_json:  # a report's line is its sample and pace; this one is an error
        _json_line({"at": now, "error": line})
        return
    click.echo(f"{datetime.fromtimestamp(now, UTC).strftime('%H:%M:%SZ')}  {line}")


def _json_line(record: object) -> None:
    """A line of `--watch --json`, out at once: a reader of the pipe acts on each."""
    sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
    sys.stdout.flush()


def _last_backup(taken: Taken | None, now: float) -> str:
    if taken is None:
        return "last backup: none recorded (`dateline backup FILE`)"
    began = datetime.fromtimestamp(taken.at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    hours = (now - taken.at) / 3600
    ago = f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"
    return (
        f"last backup: began {began} ({ago} ago), {taken.updates} updates of {taken.stories} "
        f"stories, {taken.file} ({taken.bytes:,} bytes"
        + (", signed)" if taken.signed else ", not signed)")
    )


@click.command(name="seal")
def seal_command() -> None:
    """Seal the log: from now on, only records the append function wrote are read.

    \b
    Loads the append function that seals each record with the deployment's key
    (DATELINE_SEAL_KEY; the embedded server's is DATELINE_DATA_DIR/seal.key), marks
    every partition, and seals in place the records its stories' lists hold from
    before (the stream entries from before stay as they were). After it, an entry
    written around the function (a raw XADD or RPUSH with the ingest user's password)
    is refused by every reader; the projector parks it with the reason.
    Run it once ingest and the validator run this release (an older one appends
    unsealed records, which would be refused). A new log is sealed by the projector
    when it starts; running this again is safe, and finishes an interrupted run.
    """
    cfg = settings()
    key = cfg.seal()
    if key is None:
        raise click.UsageError("DATELINE_SEAL_KEY: set it to the deployment's seal key")

    async def work(p: _Projection) -> SealReport | None:
        log = p.log
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate())
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task("sealing", total=await total_updates(log.redis, log.keys))
            return await seal_if_supported(
                log.redis, log.keys, key, progress=lambda n: bar.advance(task, n)
            )

    report = _run(work)
    if report is None:
        raise click.ClickException("the server has no functions (Redis 6.2): it cannot seal")
    click.echo(
        f"sealed: {report.partitions} partitions marked now, {report.records} records from "
        f"before sealing sealed in place; appends go by {report.function}"
    )
    if report.mismatched:
        err(
            f"{len(report.mismatched)} list records differ from their stream entry and stay "
            f"unsealed (readers refuse them): {', '.join(report.mismatched[:10])}"
        )
        sys.exit(1)
