"""`dateline redis`: the embedded server in the foreground."""

from __future__ import annotations

import signal
import threading

import click

from dateline.cli.common import server, settings


@click.command(name="redis")
def redis_command() -> None:
    """Run the embedded Redis (Valkey) on 127.0.0.1 and print its URL (with the password
    it requires, kept in DATELINE_DATA_DIR/redis.password).

    Data and the append-only file live in DATELINE_DATA_DIR (default .dateline/).
    Other dateline commands started with the same data directory use this server.
    Stops on Ctrl-C or SIGTERM, after fsyncing the append-only file.
    """
    cfg = settings()
    if cfg.redis_url:
        raise click.UsageError("REDIS_URL is set: dateline uses that server, not its own")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server(cfg) as url:
        click.echo(url, nl=True)
        click.echo(f"data: {cfg.data_dir} (appendfsync {cfg.fsync}); Ctrl-C stops", err=True)
        stop.wait()
