"""`dateline demo` and `dateline up`: the whole system, one command."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import IO

import click
import httpx
from redis.exceptions import NoPermissionError

from dateline.cli.common import err, open_log, serving, serving_views, settings, stop_on_signals
from dateline.cli.publish import read_ndjson
from dateline.cli.readers_cmd import sign_in_url
from dateline.domain.summary import summarize
from dateline.ingest.credentials import Credentials
from dateline.runtime.supervisor import Child, Supervisor, service
from dateline.store.config import Settings
from dateline.store.connection import connect
from dateline.store.embedded import EmbeddedRedis
from dateline.store.log import log_keys
from dateline.store.readers import Readers
from dateline.store.seal import SealReport, seal_if_supported
from dateline_schemas import InvalidUpdate, decode_update

HANOI = Path(__file__).resolve().parents[3] / "examples" / "hanoi-summit-2019.ndjson"
DEMO_FEED, DEMO_SOURCE = "demo-wire", "urn:feed:wire-a"
HANOI_STORY = "hanoi-summit-2019"
CONSOLE = "console"
"""The reader `dateline up` and `dateline demo` sign the person at the terminal in as."""


def _ports(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option(
        "--ingest-port", type=click.IntRange(0, 65535), default=8001, show_default=True
    )(f)
    return click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=8000,
        show_default=True,
        help="The query service and dashboard.",
    )(f)


@click.command()
@_ports
@click.option(
    "--pace",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="Seconds between updates.",
)
@click.option(
    "--file",
    "file",
    type=click.File("rb"),
    default=None,
    help=f"NDJSON updates to publish instead of {HANOI.name} (source {DEMO_SOURCE}).",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Start from an empty log, in a data directory of its own that is deleted when "
    "the demo stops (DATELINE_DATA_DIR's is left as it is): the story unfolds again. "
    "Not with REDIS_URL or DATELINE_VIEWS_URL.",
)
def demo(port: int, ingest_port: int, pace: float, file: IO[bytes] | None, fresh: bool) -> None:
    """Run the whole system and publish the Hanoi summit story over HTTP, update by update.

    Starts Redis (embedded unless REDIS_URL is set), then ingest, validator, projector,
    query and deliver as separate processes, prints the dashboard's address and publishes
    the story at PACE seconds an update. Keeps running after the story is in;
    Ctrl-C stops every process. Publishing again is safe: updates come back as
    duplicates, and the dashboard shows the story as it stands (--fresh to watch it
    unfold again).
    """
    updates = [b for _, b in (read_ndjson(file) if file else read_ndjson(HANOI.open("rb")))]
    cfg = settings()
    if not fresh:
        _run(cfg, port, ingest_port, updates, pace)
        return
    if cfg.redis_url is not None or cfg.views_url is not None:
        raise click.UsageError(
            "--fresh runs on embedded servers of its own: unset REDIS_URL and DATELINE_VIEWS_URL"
        )
    with tempfile.TemporaryDirectory(prefix="dateline-demo-") as tmp:
        _run(dataclasses.replace(cfg, data_dir=Path(tmp)), port, ingest_port, updates, pace)


@click.command()
@_ports
def up(port: int, ingest_port: int) -> None:
    """Run the whole system (Redis, ingest, validator, projector, query, deliver) until Ctrl-C."""
    _run(settings(), port, ingest_port, None, 0.0)


def _run(
    cfg: Settings, port: int, ingest_port: int, updates: list[bytes] | None, pace: float
) -> None:
    with serving(cfg) as (url, embedded), serving_views(cfg) as (views_url, views):
        env = {
            **os.environ,
            "REDIS_URL": url,
            "DATELINE_VIEWS_URL": views_url or "log",
            "DATELINE_DATA_DIR": str(cfg.data_dir),
        }
        # The processes that append never hold the seal key; those that read do.
        env.pop("DATELINE_SEAL_KEY", None)
        key = cfg.seal()  # DATELINE_SEAL_KEY, or the data dir's beside its server
        sealed = {"DATELINE_SEAL_KEY": key.hex()} if key else {}
        if key:
            _seal(cfg, url, key)
        logs = cfg.data_dir / "logs"
        children = [
            Child("ingest", service("ingest", "--port", str(ingest_port)), logs / "ingest.log"),
            Child("validator", service("validator"), logs / "validator.log"),
            Child("projector", service("projector"), logs / "projector.log", sealed),
            Child("query", service("query", "--port", str(port)), logs / "query.log", sealed),
            Child("deliver", service("deliver"), logs / "deliver.log", sealed),
        ]
        servers = [(n, s) for n, s in (("redis", embedded), ("views", views)) if s is not None]
        supervisor = Supervisor(children, env, err, servers)
        models = _shown(views_url, views) or "on the log's server"
        err(
            f"Redis: {_shown(url, embedded)}  read models: {models}"
            f"  data: {cfg.data_dir}  service logs: {logs}/"
        )
        supervisor.start()
        try:
            asyncio.run(_main(cfg, url, supervisor, port, ingest_port, updates, pace))
        finally:
            err("stopping the services")
            supervisor.stop()
            err("stopped")


def _shown(url: str | None, server: EmbeddedRedis | None) -> str:
    """A server's URL as printed: without the password of one of ours."""
    if url is None or server is None:
        return url or ""
    return url.replace(f":{server.password}@", ":****@")


def _seal(cfg: Settings, url: str, key: bytes) -> None:
    """Seal the log before its services start (`dateline seal`): they are all this
    release, so none appends unsealed records after it."""

    async def work() -> SealReport | None:
        client = connect(url)
        try:
            keys = await log_keys(client, cfg.prefix, cfg.partitions)
            return await seal_if_supported(client, keys, key)
        finally:
            await client.aclose()

    try:
        report = asyncio.run(work())
    except NoPermissionError as exc:  # REDIS_URL's user may not load functions
        err(f"the log is not sealed here ({exc}); the projector seals a new log")
        return
    if report is None:
        err("the server has no functions (Redis 6.2): the log's records are not sealed")
    elif report.records:
        err(f"sealed the log: {report.records} records from before sealing sealed in place")


async def _main(
    cfg: Settings,
    url: str,
    supervisor: Supervisor,
    port: int,
    ingest_port: int,
    updates: list[bytes] | None,
    pace: float,
) -> None:
    stop = stop_on_signals()
    watcher = asyncio.create_task(supervisor.watch(stop))
    query, ingest = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ingest_port}"
    async with httpx.AsyncClient(timeout=10) as http:
        for name, base in (("query", query), ("ingest", ingest)):
            if not await _ready(http, base, stop):
                if stop.is_set():
                    break
                raise click.ClickException(f"{name} did not answer at {base}; see its log")
        else:
            to = f"#/stories/{HANOI_STORY}" if updates is not None else "#/"
            link = await _console_link(cfg, url, query, to)
            err(
                f"\n  Sign in:    {link}"
                f"\n              (this browser, once, within 15 minutes; later: "
                f"dateline readers link {CONSOLE})"
                f"\n  Dashboard:  {query}/{to}\n  Operations: {query}/#/ops"
                f"\n  API:        {query}/v1/stories  (a token: dateline readers add NAME)\n"
            )
            if updates is not None:
                token = await _demo_token(cfg, url)
                await _say_if_told(cfg, url, updates)
                await _publish(http, ingest, token, updates, pace, stop)
            err("running; Ctrl-C stops every service")
            await stop.wait()
    stop.set()
    await watcher


async def _ready(http: httpx.AsyncClient, base: str, stop: asyncio.Event) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if (await http.get(f"{base}/healthz")).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    return False


async def _console_link(cfg: Settings, url: str, query: str, to: str) -> str:
    """A one-time sign-in link for the person at this terminal, as notebook servers
    print one: the `console` reader (ops) is made on first run; it has no token."""
    async with open_log(url, cfg) as log:
        readers = Readers(log.redis, cfg.prefix)
        if await readers.get(CONSOLE) is None:
            await readers.add(CONSOLE, "ops")
        code = await readers.sign_in_link(CONSOLE)
    return sign_in_url(query, code, to)


async def _demo_token(cfg: Settings, url: str) -> str:
    """A token for the demo's feed: registered on first run, a fresh token after that."""
    async with open_log(url, cfg) as log:
        credentials = Credentials(log.redis, cfg.prefix)
        if await credentials.get(DEMO_FEED) is None:
            return await credentials.add(DEMO_FEED, DEMO_SOURCE)
        return await credentials.new_token(DEMO_FEED)


async def _say_if_told(cfg: Settings, url: str, updates: list[bytes]) -> None:
    """Say so when the log holds the story already: its updates come back as duplicates,
    and the dashboard shows it as it stands rather than unfolding."""
    try:
        story = decode_update(updates[0]).update.subject
    except (IndexError, InvalidUpdate):  # none, or refused: said as it is published
        return
    async with open_log(url, cfg) as log:
        version = await log.version(story)
    if version:
        err(
            f"{story} is in this log already, at version {version} (data: {cfg.data_dir}): "
            "its updates come back as duplicates and the dashboard shows it as it stands. "
            "To watch it unfold again: python3 dev.py demo --fresh\n"
        )


async def _publish(
    http: httpx.AsyncClient,
    ingest: str,
    token: str,
    updates: list[bytes],
    pace: float,
    stop: asyncio.Event,
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/cloudevents+json"}
    for n, body in enumerate(updates, 1):
        if stop.is_set():
            return
        response = await http.post(f"{ingest}/v1/updates", content=body, headers=headers)
        if response.status_code >= 400:
            err(f"[{n}/{len(updates)}] refused ({response.status_code}): {response.text}")
        else:
            result = response.json()["results"][0]
            said = summarize(decode_update(body).update)
            err(f"[{n:2}/{len(updates)}] {result['status']:9} v{result.get('version'):<3} {said}")
        if n < len(updates):
            try:
                await asyncio.wait_for(stop.wait(), pace)
            except TimeoutError:
                continue
    err(f"all {len(updates)} updates published")
