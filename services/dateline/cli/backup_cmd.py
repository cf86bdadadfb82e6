"""`dateline backup` and `dateline restore`: the log in a file, and back."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from dateline.cli.common import (
    err,
    open_log,
    open_views,
    optional_output,
    server,
    settings,
    stores,
    without_password,
)
from dateline.cli.ops_cmd import Rate
from dateline.projector.replay import drop_read_models, total_updates
from dateline.store import backup, migrate
from dateline.store.config import Settings
from dateline.store.connection import UNREACHABLE, described, is_cluster, open_client
from dateline.store.layout import Keys
from dateline.store.log import CLUSTER_PARTITIONS, Log, PartitionMismatch
from dateline.store.seal import parse_key, seal_log, sealing_key

_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate())


def _bar() -> Progress:
    return Progress(*_COLUMNS, console=Console(stderr=True))


@click.command(name="backup")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
def backup_command(file: Path) -> None:
    """Write the log to FILE: every update as the log holds it (version, position,
    recorded time), the feeds, readers and subscriptions, the feeds' Redis inboxes,
    and which of its updates each subscription's receiver had not acknowledged yet.

    \b
    Appends go on meanwhile: each partition is read up to its last entry when the
    backup begins; what lands after is the next backup's.
    FILE is NDJSON, gzipped when its name ends in .gz. It is written as FILE.partial
    and renamed once whole, readable by its owner alone: it holds the feeds' and
    readers' token digests and the subscriptions' signing secrets.
    It is signed with the log's seal key where there is one (DATELINE_SEAL_KEY, or the
    embedded server's DATELINE_DATA_DIR/seal.key): keep that key apart from the
    backups, and where you can find it: `dateline restore` checks the signature with it.
    Read models are not in it: after a restore a projector builds them from the log.

    \b
    Example:
      dateline backup /backups/dateline-$(date -u +%Y%m%dT%H%MZ).ndjson.gz
    """
    cfg = settings()
    started = time.monotonic()
    with server(cfg) as url:
        done, partitions = asyncio.run(_backup(cfg, url, file))
        taken = backup.Taken(
            at=done.at,
            updates=done.updates,
            stories=done.stories,
            file=str(file.absolute()),
            bytes=file.stat().st_size,
            signed=done.signed,
        )
        unrecorded = asyncio.run(_recorded(url, cfg.prefix, taken))
    click.echo(
        f"backed up {done.updates} updates of {done.stories} stories ({partitions} "
        f"partitions, each up to its last entry when the backup began) to {file} "
        f"({_size(file.stat().st_size)}) in {time.monotonic() - started:.1f} s; "
        f"{done.settings} feed, reader and subscription settings, {done.inbox} inbox "
        f"entries, {done.unsent} updates not yet acknowledged by a subscription's receiver "
        f"and {done.parked} in their dead letters; "
        + ("signed with the log's seal key" if done.signed else "not signed (no seal key)")
    )
    if unrecorded is not None:
        err(
            f"the backup is written, but recording it in the log's server failed ({unrecorded}):"
            " `dateline status` and the DatelineBackupStale alert do not know of it"
        )
    if done.refused:
        err(
            f"left out: {len(done.refused)} entries of the log its seal refuses (written "
            "around the append function: no reader takes them for updates; the projector "
            "parks them), at "
            + ", ".join(done.refused[:10])
            + (" ..." if len(done.refused) > 10 else "")
        )
    click.echo(
        f"{file} holds the feeds' and readers' token digests and the subscriptions' signing "
        "secrets: keep it as you keep those"
    )


async def _recorded(url: str, prefix: str, taken: backup.Taken) -> str | None:
    """Say in the log's server that this backup was taken; what went wrong, if anything."""
    try:
        client = await open_client(url)
        try:
            await backup.record_taken(client, prefix, taken)
        finally:
            await client.aclose()
    except (RedisError, OSError) as exc:  # out of reach, or refused: said, not raised
        return described(exc)
    return None


def _size(n: int) -> str:
    """A file's size as a person reads it: 812 bytes, 2.7 KB, 41.3 MB."""
    if n < 1000:
        return f"{n} bytes"
    shown, unit = n / 1000, "KB"
    for bigger in ("MB", "GB", "TB"):
        if shown < 1000:
            break
        shown, unit = shown / 1000, bigger
    return f"{shown:,.1f} {unit}"


@contextlib.contextmanager
def _written(file: Path) -> Iterator[backup.Out]:
    """FILE.partial, mode 0600 (gzipped for a .gz name), renamed to FILE once the block
    ends without error, removed if it does not."""
    partial = file.with_name(file.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            if file.name.endswith(".gz"):
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as zipped:
                    yield zipped
            else:
                yield raw
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(file)


async def _backup(cfg: Settings, url: str, file: Path) -> tuple[backup.Written, int]:
    key = cfg.seal()
    async with open_log(url, cfg) as log:
        total = await total_updates(log.redis, log.keys)
        try:
            with _written(file) as out, _bar() as bar:
                task = bar.add_task("backing up", total=total)
                done = await backup.write(
                    log.redis,
                    log.sealing,
                    out,
                    source=without_password(url),
                    key=key,
                    progress=lambda n: bar.advance(task, n),
                )
                bar.update(task, total=done.updates)
        except backup.BadBackup as exc:
            raise click.ClickException(f"nothing written: {exc}") from None
        except OSError as exc:
            raise click.ClickException(f"{file}: {exc.strerror or exc}") from None
    return done, log.keys.partitions


@click.command(name="restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--partitions",
    type=click.IntRange(1, 1024),
    default=None,
    help="The log's partition count here (default: DATELINE_PARTITIONS, else the "
    "backup's; 48 on a cluster).",
)
@click.option(
    "--positions",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write each update's position in the backup and here to this file (TSV): they "
    "differ where stories move between partitions.",
)
@click.option(
    "--backup-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A file holding the seal key (64 hex digits) of the deployment that wrote the "
    "backup, to check its signature with (default: this deployment's seal key).",
)
@click.option(
    "--skip-signature",
    is_flag=True,
    help="Restore a signed backup without checking its signature (its digest is still "
    "checked): when the key that signed it is lost.",
)
@click.option("--check", "check_only", is_flag=True, help="Check FILE, and write nothing.")
def restore_command(
    file: Path,
    partitions: int | None,
    positions: Path | None,
    backup_key: Path | None,
    skip_signature: bool,
    check_only: bool,
) -> None:
    """Restore the log from FILE (`dateline backup`) into this server (REDIS_URL, or the
    embedded one), where the log under DATELINE_PREFIX is empty. Stop the services first.

    \b
    1. Reads the whole file: whole (its closing line is there), unchanged (its digest),
       and signed by the log's seal key where it was signed. Nothing is written unless
       all three hold, and the log here is empty.
    2. Deletes the read models under the prefix from their store: they were not built
       from this log. A projector builds them again once the services start.
    3. Writes every update: its history, version, recorded time and dedup entry (a
       feed's retry of an update in the backup is still a duplicate); with
       --partitions, stories move between partitions. Then the feeds, readers,
       subscriptions and the feeds' inboxes, and what each subscription was owed at
       the backup (not yet acknowledged, or parked) back in its outbox or dead
       letters. The rest of the restored history is not sent again.
    4. Checks each story's count and a digest of its records here against the file.
    5. Seals the log here where there is a seal key: its stories' lists are written
       sealed in step 3 and checked in step 4.
    What was appended after the backup began is not in it.

    \b
    Example:
      dateline restore --check /backups/dateline-20190228T0600Z.ndjson.gz
      dateline restore /backups/dateline-20190228T0600Z.ndjson.gz
    """
    cfg = settings()
    try:
        key = parse_key(backup_key.read_text(), str(backup_key)) if backup_key else cfg.seal()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--backup-key") from None
    try:
        checked = backup.verify(file, key, skip_signature=skip_signature)
    except backup.BadBackup as exc:
        raise click.ClickException(f"{file}: {exc}; nothing was written") from None
    header, end = checked.header, checked.end
    click.echo(
        f"{file}: whole and unchanged, {end.updates} updates of {end.stories} stories, written "
        f"{header.created} from {header.source} (prefix {header.prefix!r}, "
        f"{header.partitions} partitions); signature {_SIGNATURE[checked.signature]}"
    )
    if checked.deliveries:
        owed = sum(len(d.send) for d in checked.deliveries)
        parked = sum(len(d.parked) for d in checked.deliveries)
        click.echo(
            f"delivery: {owed} updates owed to {len(checked.deliveries)} subscription(s), "
            f"{parked} in their dead letters"
        )
    if check_only:
        return
    with stores(cfg) as (url, found), optional_output(positions) as out:
        asyncio.run(_restore(found, url, file, checked, partitions or cfg.partitions, out))


async def _stale_read_models(cfg: Settings, log: aioredis.Redis) -> int:
    """Read models under this prefix in their store, which an empty log cannot have built:
    of the log this restore replaces. Left, a projector would take their stories' versions
    for applied and skip the restored updates' successors. Deleted: how many keys."""
    async with open_views(cfg, log) as views:
        return await drop_read_models(views, cfg.prefix)


_SIGNATURE = {
    "checked": "checked",
    "unsigned": "none (the backed-up log had no seal key)",
    "skipped": "not checked (--skip-signature)",
}


async def _restore(
    cfg: Settings,
    url: str,
    file: Path,
    checked: backup.Checked,
    partitions: int | None,
    positions: IO[str] | None,
) -> None:
    started = time.monotonic()
    try:
        target = await open_client(url)
    except UNREACHABLE as exc:
        raise click.ClickException(f"{without_password(url)}: {exc}") from None
    cluster = is_cluster(target)
    count = partitions or (CLUSTER_PARTITIONS if cluster else checked.header.partitions)
    to = Keys(cfg.prefix, count, slotted=cluster)
    try:
        try:
            inboxes = migrate.copied_streams(to.prefix, checked.inboxes, False)
            await migrate.check_empty(target, to, inboxes)
            await Log(target, to).check_partitions()
        except (migrate.TargetNotEmpty, PartitionMismatch) as exc:
            raise click.ClickException(f"{exc}; nothing was written") from None
        stale = await _stale_read_models(cfg, target)
        key = await sealing_key(target, cfg.seal())
        with _bar() as bar:
            task = bar.add_task("restoring", total=checked.end.updates)
            try:
                restored = await backup.restore(
                    file,
                    checked,
                    target,
                    to,
                    progress=lambda n: bar.advance(task, n),
                    positions=positions,
                    seal_key=key,
                )
                bar.update(task, description="checking")
                wrong = await migrate.check(target, to, restored.checks, seal_key=key)
                sealed = None
                if not wrong and key is not None:  # its lists written sealed: marked so
                    sealed = await seal_log(target, to, key, listed=True)
            except BaseException:
                err(
                    f"the restore stopped part way: delete the keys under the prefix "
                    f"{to.prefix!r} here before trying again"
                )
                raise
    except UNREACHABLE as exc:
        raise click.ClickException(f"the server went away: {exc}") from None
    finally:
        await target.aclose()
    if wrong:
        err("the log here does not match the backup:")
        for line in wrong[:20]:
            err(f"  {line}")
        sys.exit(1)
    header = checked.header
    click.echo(
        f"restored {checked.end.updates} updates of {checked.end.stories} stories to "
        f"{without_password(url)} under the prefix {to.prefix!r} ({header.partitions} -> "
        f"{to.partitions} partitions) in {time.monotonic() - started:.1f} s; checked: each "
        f"story's count and digest match the file; {restored.settings} feed, reader and "
        f"subscription settings and {restored.inbox} inbox entries; "
        + ("sealed" if sealed is not None else "not sealed (no key, or no functions here)")
    )
    if stale:
        click.echo(
            f"read models: {stale} keys of read models under {to.prefix!r}, which were not "
            "built from this log, deleted from their store"
        )
    if header.delivery:
        click.echo(
            f"delivery: {restored.queued} updates back in the subscriptions' outboxes (not "
            f"yet acknowledged at the backup; a receiver may see one again, with its "
            f"webhook-id), {restored.parked} back in their dead letters; the rest of the "
            "restored history is not sent again"
            + ("" if header.format >= 2 else " (a backup of format 1 holds no outboxes)")
        )
    if restored.gone:
        click.echo(
            f"delivery: {', '.join(restored.gone)}: removed while the backup was taken (the "
            "file holds what it was owed, not the subscription); nothing put back for it"
        )
    click.echo(
        "next: start the services on this log (`dateline up`, or each with REDIS_URL and "
        "DATELINE_PREFIX as here): a projector builds the read models from it"
    )
