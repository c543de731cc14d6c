"""Outbound URL policy: where citysight itself may send HTTP requests (webhooks).

The camera policy (:mod:`citysight.urls`) is an allow-list of private networks; an outbound
integration goes the other way and usually reaches a public or intranet receiver, so this
policy is a deny-list with an operator override:

* only ``http`` and ``https``; no user information in the URL (the secret lives in an
  environment variable, never in the config);
* never: cloud metadata endpoints (by name or address, in any numeric spelling), the
  unspecified address, multicast and broadcast, whatever the operator lists;
* refused unless a network in ``allow_networks`` holds it: loopback (``127.0.0.0/8``,
  ``::1``, ``localhost``), link-local (``169.254.0.0/16``, ``fe80::/10``) and carrier-grade
  NAT (``100.64.0.0/10``): what an SSRF usually aims at on the host itself;
* everything else (public addresses, RFC 1918 intranets) is allowed.

:func:`check_outbound_url` validates a configured URL without DNS (literal addresses and
``localhost`` are checked against the policy). :func:`resolve_outbound` runs before every
delivery: it resolves the name, checks every address and returns the address to connect to,
so a name that resolves elsewhere on the next lookup (DNS rebinding) cannot take a delivery
to a refused address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from citysight.urls import IP, MAX_URL_LENGTH, METADATA_HOSTS, literal_ip

OUTBOUND_SCHEMES: tuple[str, ...] = ("http", "https")

_NEVER: frozenset[IP] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack metadata
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud metadata
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
    }
)

REFUSED_BY_DEFAULT: tuple[str, ...] = (
    "127.0.0.0/8",
    "::1/128",
    "169.254.0.0/16",
    "fe80::/10",
    "100.64.0.0/10",
)
"""Networks refused unless ``allow_networks`` holds the address: loopback, link-local, CGNAT."""

_REFUSED = tuple(ipaddress.ip_network(n) for n in REFUSED_BY_DEFAULT)

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(ValueError):
    """An outbound address the policy refuses (the message names it: operator detail)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: the checked address and what the URL named."""

    scheme: str
    host: str
    """Host as written in the URL (for ``Host`` and TLS server name)."""
    port: int
    address: IP
    """The checked address to connect to."""
    path: str
    """Path and query of the URL (``/`` when empty)."""

    def pinned_url(self) -> str:
        """The URL with its host replaced by :attr:`address` (connect there, nowhere else)."""
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def host_header(self) -> str:
        """``Host`` header value (the port only when it is not the scheme's default)."""
        h = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return h if self.port == default else f"{h}:{self.port}"


def _canonical(ip: IP) -> IP:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def check_address(ip: IP, allow: Sequence[Net] = ()) -> None:
    """Refuse ``ip`` unless the outbound policy allows it (see the module doc).

    Raises:
        OutboundRefused: With the address and why.
    """
    ip = _canonical(ip)
    if ip in _NEVER:
        raise OutboundRefused(f"{ip} is a cloud metadata endpoint (never allowed)")
    if ip.is_unspecified or ip.is_multicast:
        raise OutboundRefused(f"{ip} is not a unicast address")
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        raise OutboundRefused(f"{ip} is the broadcast address")
    if any(ip.version == n.version and ip in n for n in _REFUSED) and not any(
        ip.version == n.version and ip in n for n in allow
    ):
        raise OutboundRefused(
            f"{ip} is loopback, link-local or carrier-grade NAT: list its network in the "
            "webhook's allow_networks to send there"
        )


def parse_networks(cidrs: Iterable[str]) -> tuple[Net, ...]:
    """Networks from CIDR strings.

    Raises:
        ValueError: A CIDR that does not parse.
    """
    out: list[Net] = []
    for c in cidrs:
        try:
            out.append(ipaddress.ip_network(c, strict=False))
        except ValueError as exc:
            raise ValueError(f"{c!r} is not a network in CIDR form: {exc}") from None
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Parts:
    scheme: str
    host: str
    port: int
    path: str


def _parse(url: str) -> _Parts:
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch in url for ch in "\r\n\t\x00 "):
        raise ValueError("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"URL is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in OUTBOUND_SCHEMES:
        raise ValueError(
            f"URL scheme {scheme or '(none)'!r} is not allowed (allowed: "
            f"{', '.join(OUTBOUND_SCHEMES)})"
        )
    if "@" in parts.netloc:
        raise ValueError(
            "URL carries user information: put the secret in secret_env, not in the URL"
        )
    if not host:
        raise ValueError("URL has no host")
    h = host.lower().rstrip(".")
    if h in METADATA_HOSTS or h.endswith(".metadata.google.internal"):
        raise OutboundRefused(f"host {host!r} is a cloud metadata endpoint (never allowed)")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Parts(scheme, host, port or (443 if scheme == "https" else 80), path)


def _literal(host: str) -> IP | None:
    ip = literal_ip(host)
    if ip is None:
        h = host.lower().rstrip(".")
        if h == "localhost" or h.endswith(".localhost"):  # RFC 6761: always loopback
            return ipaddress.IPv4Address("127.0.0.1")
    return ip


def check_outbound_url(url: str, allow_networks: Iterable[str] = ()) -> str:
    """Validate a configured outbound URL (no DNS: names are checked at each delivery).

    Args:
        url: The URL as configured.
        allow_networks: CIDRs that lift the default refusal of loopback/link-local/CGNAT.

    Returns:
        ``url`` unchanged.

    Raises:
        ValueError: What is wrong (:class:`OutboundRefused` for a refused address).
    """
    p = _parse(url)
    ip = _literal(p.host)
    if ip is not None:
        check_address(ip, parse_networks(allow_networks))
    return url


Resolver = Callable[..., list[tuple[Any, ...]]]


def resolve_outbound(
    url: str, allow: Sequence[Net] = (), *, resolver: Resolver | None = None
) -> Target:
    """Resolve ``url``'s host, check every address, and return where to connect.

    Every address the name resolves to must be allowed (one refused answer refuses the lot:
    the next lookup could return it).

    Raises:
        OutboundRefused: An address the policy refuses.
        OSError: The name does not resolve (transient: retried).
        ValueError: A malformed URL.
    """
    p = _parse(url)
    ip = _literal(p.host)
    if ip is not None:
        addresses: list[IP] = [_canonical(ip)]
    else:
        lookup = resolver or socket.getaddrinfo
        addresses = []
        for info in lookup(p.host, p.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP):
            a = literal_ip(str(info[4][0]))
            if a is not None and a not in addresses:
                addresses.append(a)
        if not addresses:
            raise OSError(f"host {p.host!r} resolved to no address")
    for a in addresses:
        check_address(a, allow)
    return Target(p.scheme, p.host, p.port, addresses[0], p.path)
