"""Which URLs a webhook may be sent to (deny by default).

Deliveries go only where staff point them, and only to:
- ``http`` or ``https`` URLs with a host, no user:password part;
- hosts whose every address is public (globally routable), or inside a network listed in
  ``GENREWEB_WEBHOOK_ALLOWED_NETWORKS`` (e.g. ``127.0.0.1/32`` for a receiver on the same
  machine, ``10.0.0.0/8`` for an internal service).
Link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata services live there) are
refused whatever that setting says. The check runs when an endpoint is saved and again before
every attempt, on the addresses the request then connects to (the connection is made to the
checked address, so a name that starts resolving elsewhere is refused, not followed).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

NEVER = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


class UnsafeURL(ValueError):
    """The URL or one of its addresses is not allowed."""


class Unresolvable(UnsafeURL):
    """The host does not resolve (now): refused when saving, retried when delivering."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (the Host header and TLS name)
    port: int
    address: str  # the checked IP address the request connects to


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    value = settings.GENREWEB_WEBHOOK_ALLOWED_NETWORKS
    items = value.split(",") if isinstance(value, str) else list(value)
    return [ipaddress.ip_network(item.strip(), strict=False) for item in items if str(item).strip()]


def check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address in net for net in NEVER):
        raise UnsafeURL(f"{address} is a link-local address (e.g. a cloud metadata service); never allowed")
    if any(address.version == net.version and address in net for net in allowed_networks()):
        return
    if not address.is_global or address.is_multicast:
        raise UnsafeURL(
            f"{address} is not a public address; add its network to GENREWEB_WEBHOOK_ALLOWED_NETWORKS to allow it"
        )


def parse(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("the URL may not carry a user name or password; the signature authenticates deliveries")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(url: str) -> Target:
    """Check ``url`` and every address its host resolves to; the first one is the target."""
    scheme, host, port = parse(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"cannot resolve {host}: {exc}") from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        check_address(address)
        addresses.append(address)
    if not addresses:
        raise Unresolvable(f"{host} has no address")
    return Target(scheme=scheme, host=host, port=port, address=str(addresses[0]))
