"""Where deliveries may go: no server-side request forgery.

A subscription's URL is the subscriber's to choose, and the delivery service runs
inside the newsroom's network: left alone, a URL could make it POST to a database's
admin port, a cloud metadata service (169.254.169.254) or anything on loopback. So
every address a host resolves to is checked, when the subscription is added and again
on every connection: the connection goes to the address that was checked, not to a
second lookup (a DNS answer that changes between the two cannot slip through).
`--allow-private` lets one subscription reach private and loopback addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """A URL the delivery service will not send to, and why."""


def refusal(address: Address) -> str | None:
    """Why an address is off limits, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped)
    for test, what in (
        (address.is_loopback, "loopback"),
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local (cloud metadata services live there)"),
        (address.is_multicast, "multicast"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
    ):
        if test:
            return what
    return None if address.is_global else "not globally routable"


def check_url(url: str) -> tuple[str, int]:
    """The host and port of a URL a subscription may use; TargetRefused names the problem."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused(f"url: expected http:// or https://, got {url!r}")
    if not parts.hostname:
        raise TargetRefused(f"url: no host in {url!r}")
    if parts.username or parts.password:
        raise TargetRefused(
            "url: credentials in the URL would be sent to every redirect; "
            "the signature is how a receiver knows us"
        )
    if parts.fragment:
        raise TargetRefused(f"url: a fragment is never sent, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"url: {exc}") from None
    return parts.hostname, port


async def resolve(host: str, port: int) -> list[Address]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def allowed(host: str, addresses: Iterable[Address]) -> list[Address]:
    """The addresses of `host` a delivery may use: TargetRefused if none is public."""
    found = list(dict.fromkeys(addresses))
    if not found:
        raise TargetRefused(f"url: {host!r} resolves to no address")
    bad = {a: why for a in found if (why := refusal(a)) is not None}
    if bad:
        a, why = next(iter(bad.items()))
        raise TargetRefused(
            f"url: {host!r} resolves to {a}, a {why} address; deliveries go to public "
            "addresses only (subscriptions add --allow-private allows it for one)"
        )
    return found


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse a subscription URL (TargetRefused) before it is stored."""
    host, port = check_url(url)
    if allow_private:
        return
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        raise TargetRefused(f"url: {host!r} does not resolve ({exc})") from None
    allowed(host, addresses)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses `allowed` lets through."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = allowed(host, await resolve(host, port))
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from exc
        except TargetRefused as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        # TLS still names `host` (SNI and certificate checks): httpcore passes the
        # origin's host to start_tls, not the address connected to.
        failed: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failed = exc
        assert failed is not None  # noqa: S101 - `allowed` returns at least one address
        raise failed

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("deliveries go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
