"""`dateline deliver` and `dateline subscriptions`: updates out to the systems around a newsroom."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import click

from dateline.cli.common import (
    err,
    on_the_log,
    probe_options,
    redis_ready,
    server,
    servers_reachable,
    settings,
    stop_on_signals,
    story_filters,
)
from dateline.deliver.targets import TargetRefused, check_target
from dateline.runtime import status
from dateline.runtime.heap import tune_collector
from dateline.runtime.probes import probes
from dateline.store.connection import cluster_mode
from dateline.store.subscriptions import Mode, SubscriptionExists, Subscriptions
from dateline_schemas import TYPES

T = TypeVar("T")


def _duration(text: str) -> float:
    """`90`, `90s`, `15m`, `2h`, `1d` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        raise click.BadParameter(
            f"expected a duration like 30s, 15m, 2h or 1d, got {text!r}"
        ) from None
    if seconds <= 0:
        raise click.BadParameter(f"expected a duration above 0, got {text!r}")
    return seconds


class Duration(click.ParamType):  # type: ignore[type-arg]
    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        return value if isinstance(value, float) else _duration(str(value))


@click.command(name="deliver")
@probe_options
@click.option(
    "--give-up-after",
    type=Duration(),
    default="24h",
    show_default=True,
    help="Park an update in the subscription's dead letters once it has failed for this long.",
)
@click.option(
    "--max-backoff",
    type=Duration(),
    default="5m",
    show_default=True,
    help="The longest wait between two attempts (the wait doubles from 1 s, with jitter).",
)
@click.option("--first-backoff", type=Duration(), default="1s", show_default=True, hidden=True)
@click.option(
    "--timeout",
    type=Duration(),
    default="10s",
    show_default=True,
    help="How long a receiver has to answer.",
)
def deliver_command(
    probe_host: str,
    probe_port: int,
    give_up_after: float,
    max_backoff: float,
    first_backoff: float,
    timeout: float,
) -> None:
    """Deliver updates to the subscriptions as signed CloudEvents, in the foreground.

    \b
    A FastStream app: it reads the log through consumer group `deliver`, puts each
    update in the outbox of every subscription that wants it, and POSTs each outbox
    in order per story, signed per Standard Webhooks. Failures are retried with
    backoff; after --give-up-after an update is parked (`subscriptions redrive`).
    One process delivers at a time; start more as standbys.
    """
    from dateline.deliver.app import create_app  # noqa: PLC0415 - the HTTP stack is heavy
    from dateline.deliver.worker import RetryPolicy  # noqa: PLC0415

    cfg = settings()
    policy = RetryPolicy(first_backoff, max_backoff, give_up_after, timeout)

    async def run() -> None:
        stop = stop_on_signals()
        if not await servers_reachable(url, None, stop):
            return
        service = create_app(cfg, url, cluster=await cluster_mode(url), policy=policy)
        assert service.app is not None  # noqa: S101 - create_app sets it
        tune_collector()
        err("deliver: waiting for the group's lease (another process may hold it)")
        async with probes(probe_host, probe_port, redis_ready(service.subscriptions.client)):
            await service.app.start()
            err(f"deliver: delivering to {len(await service.subscriptions.all())} subscriptions")
            lost = asyncio.ensure_future(service.kit.lost.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
            lost.cancel()
            stopping.cancel()
            await service.app.stop()
            if service.kit.lost.is_set():
                raise click.ClickException("the lease was lost to another process; stopping")

    with server(cfg) as url:
        asyncio.run(run())


@click.group()
def subscriptions() -> None:
    """Subscriptions: URLs told of updates as they land, as signed CloudEvents."""


def _run(work: Callable[[Subscriptions], Awaitable[T]]) -> T:
    return on_the_log(lambda log: work(Subscriptions(log.redis, log.keys)))


def _of(name: str, work: Callable[[Subscriptions], Awaitable[T]]) -> T:
    """`work` on the subscription `name`; said, not run, if there is none."""

    async def known(s: Subscriptions) -> tuple[bool, T | None]:
        if await s.get(name) is None:
            return False, None
        return True, await work(s)

    found, done = _run(known)
    if not found:
        raise click.ClickException(f"no subscription named {name!r}")
    return cast(T, done)


@subscriptions.command(name="add")
@click.argument("url")
@click.option("--name", help="A name for it (default: sub- and 8 hex digits).")
@story_filters
@click.option(
    "--mode",
    type=click.Choice(["structured", "binary"]),
    default="structured",
    show_default=True,
    help="CloudEvents HTTP content mode: the whole event as the body, or ce- headers.",
)
@click.option(
    "--allow-private",
    is_flag=True,
    help="Allow loopback, private and link-local addresses (refused by default: the "
    "service would otherwise reach inside the newsroom's network).",
)
def subscriptions_add(
    url: str,
    name: str | None,
    prefixes: tuple[str, ...],
    types: tuple[str, ...],
    mode: Mode,
    allow_private: bool,
) -> None:
    """Subscribe URL to updates appended from now on; prints its signing secret once."""
    try:
        asyncio.run(check_target(url, allow_private=allow_private))
        sub, secret = _run(
            lambda s: s.add(
                url,
                name=name,
                story_prefixes=prefixes,
                types=types,
                mode=mode,
                allow_private=allow_private,
                known_types=TYPES,
            )
        )
    except (TargetRefused, SubscriptionExists, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(secret)
    err(
        f"subscription {sub.name!r} -> {url} ({mode}); the line above is its signing secret "
        "(Standard Webhooks): keep it, it is not shown again"
    )


@subscriptions.command(name="list")
@click.option("--json", "as_json", is_flag=True)
def subscriptions_list(as_json: bool) -> None:
    """Every subscription and how its deliveries stand (never its secret)."""
    import msgspec  # noqa: PLC0415

    found = on_the_log(lambda log: status.deliveries(log.redis, log.keys))
    if as_json:
        click.echo(msgspec.json.encode(found).decode())
        return
    lag = "unknown" if found.fanout_lag is None else found.fanout_lag
    click.echo(f"not yet fanned out from the log: {lag}")
    if found.processes:
        click.echo(f"delivery service: {', '.join(found.processes)}")
    if found.standbys:
        click.echo(f"standing by to take over: {', '.join(found.standbys)}")
    if not found.processes and found.subscriptions:
        click.echo(
            "no delivery service running: nothing is sent until `dateline deliver` runs "
            "(`dateline up` runs it)"
        )
    if found.moving_to:
        click.echo(
            f"every send HELD: the log is being moved to {found.moving_to}, or has moved "
            "there (`dateline migrate`); deliver runs there once the move is done"
        )
    for s in found.subscriptions:
        limits = ", ".join([*(f"stories {p}*" for p in s.story_prefixes), *s.types]) or "all"
        state = "PAUSED" if s.paused else "HELD (move)" if found.moving_to else "active"
        last = ""
        if s.last_delivered:
            last = " last delivered " + dt.datetime.fromtimestamp(s.last_delivered).isoformat(
                timespec="seconds"
            )
        click.echo(
            f"{s.name}\t{s.url}\t{s.mode}\t{state}\t{limits}\n"
            f"\tbacklog {s.backlog} (oldest {s.lag_seconds} s), retrying {s.retrying}, "
            f"parked {s.parked}, delivered {s.delivered}, failed attempts {s.failed_attempts}"
            f"{last}"
            + (f"\n\tlast error: {s.last_error}" if s.last_error else "")
            + (
                f"\n\tmissed {s.held}: parked in the fan-out before they reached it "
                "(`dateline dlq list --group deliver`; `dateline dlq redrive STORY --group "
                "deliver` sends them)"
                if s.held
                else ""
            )
        )


def _toggle(name: str, paused: bool) -> None:
    if not _run(lambda s: s.set_paused(name, paused)):
        raise click.ClickException(f"no subscription named {name!r}")
    click.echo(f"subscription {name!r} {'paused' if paused else 'resumed'}")


@subscriptions.command(name="pause")
@click.argument("name")
def subscriptions_pause(name: str) -> None:
    """Stop sending to NAME; its updates wait in its outbox."""
    _toggle(name, True)


@subscriptions.command(name="resume")
@click.argument("name")
def subscriptions_resume(name: str) -> None:
    """Send to NAME again, starting with what waited."""
    _toggle(name, False)


@subscriptions.command(name="remove")
@click.argument("name")
def subscriptions_remove(name: str) -> None:
    """Forget NAME, and drop every update queued or parked for it."""
    if not _run(lambda s: s.remove(name)):
        raise click.ClickException(f"no subscription named {name!r}")
    click.echo(f"subscription {name!r} removed")


@subscriptions.command(name="redrive")
@click.argument("name")
def subscriptions_redrive(name: str) -> None:
    """Send NAME's parked updates again, in their order (the running service does it)."""
    parked = _of(name, lambda s: s.request_redrive(name))
    click.echo(
        f"redrive of {parked} parked updates of {name!r} requested; `dateline deliver` "
        "puts them back in the outbox before its next window"
    )


@subscriptions.command(name="dead-letters")
@click.argument("name")
def subscriptions_dead_letters(name: str) -> None:
    """NAME's parked updates: position, story, attempts and the last error."""
    letters = _of(name, lambda s: s.dead_letters(name))
    if not letters:
        click.echo(f"{name!r} has no parked updates")
    for _, p in letters:
        when = dt.datetime.fromtimestamp(p.parked_at).isoformat(timespec="seconds")
        why = f"behind {p.behind}" if p.behind else f"{p.attempts} attempts: {p.error}"
        click.echo(f"{p.position}\t{p.story}\t{when}\t{why}")
