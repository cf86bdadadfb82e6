"""`dateline redis`: the embedded server in the foreground."""

from __future__ import annotations

import signal
import threading

import click

from dateline.cli.common import serving, serving_views, settings
from dateline.store.cluster import local_cluster
from dateline.store.embedded import EmbeddedRedisError

RESTART_CHECK_S = 1.0
"""How often `--cluster` looks for a node that exited, to start it again."""


@click.command(name="redis")
@click.option(
    "--cluster",
    is_flag=True,
    help="A Redis Cluster of embedded servers instead of one server (in DATA/cluster/).",
)
@click.option(
    "--masters",
    type=click.IntRange(3, 16),
    default=3,
    show_default=True,
    help="With --cluster: how many shards (a cluster needs three masters at least).",
)
@click.option(
    "--replicas",
    type=click.IntRange(0, 4),
    default=1,
    show_default=True,
    help="With --cluster: replicas of each master (one takes over if its master dies).",
)
def redis_command(cluster: bool, masters: int, replicas: int) -> None:
    """Run the embedded Redis (Valkey) on 127.0.0.1 and print its URL (with the password
    it requires, kept in DATELINE_DATA_DIR/redis.password).

    Data and the append-only file live in DATELINE_DATA_DIR (default .dateline/).
    Other dateline commands started with the same data directory use this server.
    Beside it runs a second one for the read models (DATELINE_DATA_DIR/views/, under
    appendfsync everysec: they are rebuilt from the log, so a commit need not wait for
    the disk); its URL goes to stderr. DATELINE_VIEWS_URL=log keeps them on the first.
    Stops on Ctrl-C or SIGTERM, after fsyncing the append-only file.

    With --cluster it starts a cluster of masters and replicas instead, each node a
    server of its own on a port of its own, and prints the URL of one (any node finds
    the others). A node that exits (a crash, a SIGKILL) is started again within a
    second and rejoins its shard. Started again on the same data directory, the same
    cluster comes back. Every dateline service and command runs on it: set REDIS_URL
    to the URL it prints (docs/scaling.md).
    """
    cfg = settings()
    if cfg.redis_url:
        raise click.UsageError("REDIS_URL is set: dateline uses that server, not its own")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if cluster:
        try:
            with local_cluster(cfg.data_dir, masters, replicas, cfg.fsync) as nodes:
                click.echo(nodes.url, nl=True)
                ports = ", ".join(str(n.port) for n in nodes.nodes)
                click.echo(
                    f"cluster: {masters} masters, {replicas} replicas each, on 127.0.0.1 "
                    f"ports {ports}; data: {nodes.data_dir} (appendfsync {cfg.fsync}); "
                    "Ctrl-C stops every node",
                    err=True,
                )
                while not stop.wait(RESTART_CHECK_S):
                    for port, status, failed in nodes.restart_exited():
                        click.echo(
                            f"node {port} exited ({status}); started it again: it rejoins its shard"
                            if failed is None
                            else f"node {port} exited ({status}); could not start it again "
                            f"({failed}); trying again in {RESTART_CHECK_S:g} s",
                            err=True,
                        )
        except EmbeddedRedisError as exc:
            raise click.ClickException(f"embedded cluster: {exc}") from None
        return
    with serving(cfg) as (url, ours), serving_views(cfg) as (views_url, views):
        click.echo(url, nl=True)
        malloc = f"; malloc: {ours.allocator.name} (preloaded)" if ours and ours.allocator else ""
        click.echo(
            f"data: {cfg.data_dir} (appendfsync {cfg.fsync}{malloc}); Ctrl-C stops", err=True
        )
        if views is not None:
            click.echo(
                f"read models: {views_url} (data: {views.data_dir}, appendfsync {views.fsync})",
                err=True,
            )
        stop.wait()
