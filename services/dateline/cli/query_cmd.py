"""`dateline query`: the read side in the foreground."""

from __future__ import annotations

import asyncio

import click

from dateline.cli.common import err, servers_reachable, settings, stores


@click.command(name="query")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
def query_command(host: str, port: int) -> None:
    """Serve the query API, live pushes (SSE) and the dashboard in the foreground.

    \b
    Dashboard:  http://HOST:PORT/
    API:        http://HOST:PORT/v1/stories  (OpenAPI: /v1/openapi.json)
    Live:       http://HOST:PORT/v1/live, /v1/stories/ID/live (Server-Sent Events)
    """
    # Imported here: the HTTP stack costs every other command a third of a second.
    from dateline.query.app import create_app  # noqa: PLC0415
    from dateline.web.server import config, serve  # noqa: PLC0415

    cfg = settings()
    with stores(cfg) as (url, found):
        asyncio.run(servers_reachable(url, found.views_url))
        err(f"dashboard on http://{host}:{port}/ (API: /v1/stories, OpenAPI: /v1/openapi.json)")
        # Live streams never end by themselves: give them this long, then close them.
        served = config(create_app(found, url), host=host, port=port, timeout_graceful_shutdown=2)
        serve(served)
