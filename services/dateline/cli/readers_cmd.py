"""`dateline readers`: who may read the query API and the dashboard, and what."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote

import click

from dateline.cli.common import err, json_lines, open_log, open_views, settings, stores
from dateline.store.readers import ROLES, ReaderExists, Readers, Role

T = TypeVar("T")


def run_readers(work: Callable[[Readers], Awaitable[T]]) -> T:
    cfg = settings()

    async def go() -> T:
        async with open_log(url, found) as log, open_views(found, log.redis) as views:
            # A revocation rings where the query processes listen: the read models' store.
            bell = None if views is log.redis else views
            return await work(Readers(log.redis, cfg.prefix, bell=bell))

    with stores(cfg) as (url, found):
        return asyncio.run(go())


@click.group()
def readers() -> None:
    """Reader credentials: a bearer token per reader, a role, the stories it may see.

    \b
    reader  the stories of its prefixes; an update recalled as erroneous shows as
            recalled, with no content
    editor  the same, with the audit trail whole
    ops     the same, and /v1/status, /metrics and the operations page
    """


@readers.command(name="add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="reader", show_default=True)
@click.option(
    "--story-prefix",
    "prefixes",
    multiple=True,
    help="Only stories whose id starts with this (repeatable; none: every story).",
)
@click.option(
    "--link",
    "base",
    default=None,
    metavar="URL",
    help="Also print a one-time sign-in link for the dashboard at URL "
    "(http://127.0.0.1:8000, say), valid 15 minutes.",
)
def readers_add(name: str, role: Role, prefixes: tuple[str, ...], base: str | None) -> None:
    """Register reader NAME and print its token. It is shown this once and stored hashed.

    Send it as `Authorization: Bearer TOKEN`, or paste it on the dashboard's sign-in page.
    """

    async def add(r: Readers) -> tuple[str, str | None]:
        token = await r.add(name, role, list(prefixes))
        return token, (await r.sign_in_link(name) if base else None)

    try:
        token, code = run_readers(add)
    except (ReaderExists, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)
    scope = ", ".join(f"{p}*" for p in prefixes) or "every story"
    err(f"reader {name!r} ({role}) sees {scope}; keep the token: it is not shown again")
    if base and code:
        err(f"sign in once: {sign_in_url(base, code)}")


@readers.command(name="link")
@click.argument("name")
@click.option("--url", "base", default="http://127.0.0.1:8000", show_default=True)
def readers_link(name: str, base: str) -> None:
    """Print a one-time sign-in link for NAME's browser (15 minutes, once)."""
    try:
        code = run_readers(lambda r: r.sign_in_link(name))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(sign_in_url(base, code))


@readers.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a reader, a line each.")
def readers_list(as_json: bool) -> None:
    """Every reader, its role and stories (never its token)."""
    found = run_readers(lambda r: r.readers())
    if as_json:  # a Grant holds no token, nor its digest
        json_lines(found)
        return
    for r in found:
        scope = ", ".join(f"{p}*" for p in r.story_prefixes) or "every story"
        state = "REVOKED" if r.revoked else "active"
        click.echo(f"{r.name}\t{r.role}\t{state}\t{scope}")


@readers.command(name="revoke")
@click.argument("name")
def readers_revoke(name: str) -> None:
    """Revoke NAME: its token and its browsers' sessions end at their next request."""
    if not run_readers(lambda r: r.revoke(name)):
        raise click.ClickException(f"no reader named {name!r}")
    click.echo(f"reader {name!r} revoked")


def sign_in_url(base: str, code: str, to: str = "") -> str:
    """The one-time link; `to`, a dashboard route (`#/ops`), is where it lands."""
    tail = f"&to={quote(to, safe='')}" if to else ""
    return f"{base.rstrip('/')}/v1/session/link?code={code}{tail}"
