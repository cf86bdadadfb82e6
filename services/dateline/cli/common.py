"""What every command shares: settings, the Redis it talks to, the log client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import msgspec
import redis.asyncio as aioredis

from dateline.runtime.patience import reachable
from dateline.store.config import Settings, SettingsError
from dateline.store.connection import PROBE_S, UNREACHABLE, open_client, within
from dateline.store.embedded import (
    EmbeddedRedis,
    EmbeddedRedisError,
    redis_url,
    served,
    served_views,
)
from dateline.store.log import Log, PartitionMismatch
from dateline.store.seal import SealKeyMissing, Unsealed
from dateline_schemas import RuleError, check_story_id

FC = TypeVar("FC", bound=Callable[..., object])
T = TypeVar("T")


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


@contextlib.contextmanager
def stores(cfg: Settings) -> Iterator[tuple[str, Settings]]:
    """`server`, and `cfg` with the store of read models found (`views_url`):
    DATELINE_VIEWS_URL, the log's server (None), or a second embedded server, started
    here if no process runs it yet (`served_views`)."""
    with server(cfg) as url:
        try:
            with served_views(cfg) as (views, _):
                yield url, dataclasses.replace(cfg, views_url=views, own_views=False)
        except EmbeddedRedisError as exc:
            raise click.ClickException(f"embedded store of read models: {exc}") from None


async def servers_reachable(
    url: str, views_url: str | None = None, stop: asyncio.Event | None = None
) -> bool:
    """A service's start: its log's server, and its store of read models if apart,
    waited for while they cannot be reached (one log line a try); False if `stop` came
    first. A credential refused is said at once (`cli/trouble.py`)."""
    if not await reachable(url, "the log's server", stop):
        return False
    return views_url is None or await reachable(views_url, "the store of read models", stop)


@contextlib.asynccontextmanager
async def open_views(cfg: Settings, log: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """A client of the store of read models (`stores` found it): the log's own client
    `log` when they are on the log's server; else one of its own, closed after."""
    if cfg.views_url is None:
        yield log
        return
    views = await open_client(cfg.views_url)
    try:
        yield views
    finally:
        await views.aclose()


@contextlib.contextmanager
def serving_views(cfg: Settings) -> Iterator[tuple[str | None, EmbeddedRedis | None]]:
    """`stores`' store of read models, and its embedded server when this process started
    it (to supervise)."""
    try:
        with served_views(cfg, lasting=True) as found:
            yield found
    except EmbeddedRedisError as exc:
        raise click.ClickException(f"embedded store of read models: {exc}") from None


@contextlib.contextmanager
def serving(cfg: Settings) -> Iterator[tuple[str, EmbeddedRedis | None]]:
    """`server`, and the embedded server when this process started it (to supervise)."""
    try:
        with served(cfg, lasting=True) as found:
            yield found
    except EmbeddedRedisError as exc:
        raise click.ClickException(f"embedded Redis: {exc}") from None


@contextlib.asynccontextmanager
async def open_log(url: str, cfg: Settings) -> AsyncIterator[Log]:
    """The log, on a single server or a cluster (`Log.connect` finds which)."""
    try:
        log = await Log.connect(
            url,
            prefix=cfg.prefix,
            partitions=cfg.partitions,
            min_replicas=cfg.min_replicas,
            replica_timeout_ms=cfg.replica_timeout_ms,
            seal_key=cfg.seal(),
        )
    except PartitionMismatch as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield log
    except (Unsealed, SealKeyMissing) as exc:
        raise click.ClickException(f"the log's seal: {exc}") from None
    finally:
        await log.close()


def on_the_log(work: Callable[[Log], Awaitable[T]]) -> T:
    """`work` on this command's log (its server found, or embedded and started), closed
    after."""
    cfg = settings()

    async def go() -> T:
        async with open_log(url, cfg) as log:
            return await work(log)

    with server(cfg) as url:
        return asyncio.run(go())


_PREFIXES = click.option(
    "--story-prefix",
    "prefixes",
    multiple=True,
    help="Only stories whose id starts with this (repeatable).",
)
_TYPES = click.option("--type", "types", multiple=True, help="Only this update type (repeatable).")


def story_filters(f: FC) -> FC:
    """--story-prefix/--type, repeatable: what a feed may publish, or a subscription hears."""
    return _PREFIXES(_TYPES(f))


class StoryId(click.ParamType):  # type: ignore[type-arg]
    """A story id, checked as the contract writes it: `HANOI` is refused by name, not
    looked up and reported as a story with no updates. `unreadable`: "" is taken too,
    the story of parked entries whose id could not be read (`dateline dlq list`)."""

    name = "story"

    def __init__(self, *, unreadable: bool = False) -> None:
        self.unreadable = unreadable

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        if self.unreadable and value == "":
            return ""
        try:
            check_story_id(value)
        except RuleError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


story_argument = click.argument("story", type=StoryId())
parked_story_argument = click.argument("story", type=StoryId(unreadable=True))


@contextlib.contextmanager
def optional_output(path: Path | None) -> Iterator[IO[str] | None]:
    """`path` open for writing text, or None for no path."""
    if path is None:
        yield None
        return
    with path.open("w") as out:
        yield out


def without_password(url: str) -> str:
    """A URL without its password, for messages and the source's `moving` hash."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    auth, host = rest.rsplit("@", 1)
    user = auth.split(":", 1)[0]
    return f"{scheme}://{user + ':****' if user else ':****'}@{host}"


def err(text: str) -> None:
    click.echo(text, file=sys.stderr)


def json_lines(items: Iterable[object]) -> None:
    """Each item as one line of JSON, for a script to read (`list --json`)."""
    for item in items:
        click.echo(msgspec.json.encode(item).decode())


def probe_options(f: FC) -> FC:
    """--probe-host/--probe-port: /healthz, /readyz and /metrics for a service without HTTP."""
    f = click.option(
        "--probe-port",
        type=click.IntRange(0, 65535),
        default=0,
        envvar="DATELINE_PROBE_PORT",
        show_default=True,
        help="Serve /healthz, /readyz and /metrics on this port (0: off).",
    )(f)
    return click.option(
        "--probe-host", default="127.0.0.1", show_default=True, envvar="DATELINE_PROBE_HOST"
    )(f)


def redis_ready(
    client: aioredis.Redis, views: aioredis.Redis | None = None
) -> Callable[[], Awaitable[str | None]]:
    """A readiness check: the log's server answers within a second, and the store of read
    models if the service has one apart (`views`)."""

    async def ready() -> str | None:
        for name, server in (("Redis", client), ("the read models' store", views)):
            if server is None:
                continue
            try:
                await within(PROBE_S, server.ping(), server)
            except UNREACHABLE as exc:
                return f"{name}: {exc}"
        return None

    return ready


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on uvloop's event loop where it is installed (not on Windows), as
    uvicorn runs the query and ingest: the projector's live cycles counted 5% fewer of
    Python's instructions on it (callgrind, 2026-12-03; in bulk the same)."""
    try:
        import uvloop  # noqa: PLC0415 - not on every platform
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for the running loop: how every service stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
