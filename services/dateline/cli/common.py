"""What every command shares: settings, the Redis it talks to, the log client."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterator

import click

from dateline.config import Settings, SettingsError
from dateline.embedded import EmbeddedRedisError, redis_url
from dateline.log import Log, PartitionMismatch


def settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@contextlib.contextmanager
def server(cfg: Settings) -> Iterator[str]:
    """The Redis URL for this command; errors become one clear line, not a traceback."""
    try:
        with redis_url(cfg) as url:
            yield url
    except EmbeddedRedisError as exc:
        raise click.ClickException(f"embedded Redis: {exc}") from None


@contextlib.asynccontextmanager
async def open_log(url: str, cfg: Settings) -> AsyncIterator[Log]:
    try:
        log = await Log.connect(url, prefix=cfg.prefix, partitions=cfg.partitions)
    except PartitionMismatch as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield log
    finally:
        await log.close()


def err(text: str) -> None:
    click.echo(text, file=sys.stderr)
