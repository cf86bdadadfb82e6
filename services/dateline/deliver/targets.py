"""Where deliveries may go: no server-side request forgery.

A subscription's URL is the subscriber's to choose, and the delivery service runs
inside the newsroom's network: left alone, a URL could make it POST to a database's
admin port, a cloud metadata service (169.254.169.254) or anything on loopback. So
every address a host resolves to is checked when the subscription is added, and the
address of every connection as it is opened (`guarded_socket`): the check is on the
address connected to, not on a second lookup, so a DNS answer that changes between the
two cannot slip through. A name whose addresses are public and private alike is refused
when added; should it later resolve so, its private addresses are refused one by one.
`--allow-private` lets one subscription reach private and loopback addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import AddrInfoType

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


class Refused(OSError):
    """A connection the guard would not open: the address is inside the network."""


def guarded_socket(addr_info: AddrInfoType) -> socket.socket:
    """The socket for one address a connection is about to be made to, if `refusal` lets
    it through (aiohttp's `socket_factory`). Every connection of the guarded pool comes
    here with the very address it will connect to: a name's addresses as its lookup gave
    them, and an address written in the URL, which aiohttp never looks up."""
    family, kind, proto, _, where = addr_info
    address = ipaddress.ip_address(where[0])
    if (why := refusal(address)) is not None:
        raise Refused(
            f"{address} is a {why} address; deliveries go to public addresses only "
            "(subscriptions add --allow-private allows it for one)"
        )
    return socket.socket(family=family, type=kind, proto=proto)
