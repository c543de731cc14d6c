"""Camera URL policy: allowed schemes, network allow-list, redaction and FFmpeg open options.

URLs accepted from the camera API go through :func:`check_url` (schemes, length, literal
addresses against the network allow-list, no DNS); a stream reader calls
:func:`resolve_source` before every connect, which resolves the host, checks every address
against the allow-list and returns the URL pinned to the checked address (a name that
resolves elsewhere on the next lookup cannot take FFmpeg there: DNS rebinding). FFmpeg is
opened with :func:`ffmpeg_options`: socket/read timeouts, a protocol whitelist (no ``file:``,
``concat:`` or other FFmpeg tricks) and no HTTP redirects.

Every check here is linear in the input: a URL longer than :data:`MAX_URL_LENGTH` is refused
before it is parsed, parsing is :func:`urllib.parse.urlsplit`, and no pattern here can
backtrack.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

DEFAULT_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps")

MAX_URL_LENGTH = 2048
"""Longest camera URL accepted (bytes of text); longer ones are refused before parsing."""

# FFmpeg protocols and pseudo-protocols that read local files, run commands or nest
# other URLs. Never allowed, whatever the operator configures.
FORBIDDEN_SCHEMES: frozenset[str] = frozenset(
    {
        "file",
        "concat",
        "concatf",
        "subfile",
        "data",
        "pipe",
        "fd",
        "cache",
        "crypto",
        "hls",
        "async",
        "tee",
        "gopher",
        "gophers",
        "ftp",
        "sftp",
        "smb",
        "unix",
        "md5",
        "ipfs",
        "ipns",
        "bluray",
        "android_content",
        "amqp",
        "zmq",
        "libssh",
        "librtmp",
    }
)

METADATA_HOSTS: frozenset[str] = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "100.100.100.200",  # Alibaba Cloud metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
    }
)

# Cloud metadata endpoints: refused even when the operator lists their network.
_METADATA_ADDRESSES: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),
        ipaddress.ip_address("fd00:ec2::254"),
    }
)

DEFAULT_PORTS: dict[str, int] = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}

DEFAULT_CAMERA_PORTS: tuple[int, ...] = (554, 322, 8554, 80, 443)
"""Ports of the default allow-list: RTSP (554, 8554), RTSPS (322), HTTP(S) (80, 443)."""

DEFAULT_ALLOWED_NETWORKS: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)
"""Private networks (RFC 1918, IPv6 ULA) where cameras live; loopback, link-local,
carrier-grade NAT and everything public are not in it."""

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")

# Timeouts FFmpeg takes in microseconds.
DEFAULT_TIMEOUT_S = 5.0

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


# ``scheme://authority`` anywhere in a text. The scheme is bounded (32 characters) and the
# authority is a run of characters that cannot end it, with nothing after it in the pattern:
# no backtracking, one pass over the text. The authority ends at what ends it in a URL
# (``/ ? #``) or a quoted URL inside a message (whitespace, quotes, ``<>``); its user
# information runs to its last ``@``, as urlsplit reads it. Passwords in URLs built here are
# percent-encoded (:func:`with_password`), so they never hold those characters.
_AUTHORITY_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,31}://)(?P<auth>[^\s/?#'\"<>]*)")


def redact(text: str, *, keep_user: bool = True) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (safe to log or return).

    The one credential scrubber: for URLs (``rtsp://admin:pw@host/x`` →
    ``rtsp://admin:***@host/x``) and for any text that quotes them (FFmpeg's and PyAV's error
    messages carry the URL they opened, password included). Linear in ``len(text)``.

    Args:
        text: A URL, a file path or any message.
        keep_user: Keep user names (``user:***@``, what logs show); ``False`` removes the whole
            ``user:password@`` (what the API returns: no user information at all).

    Returns:
        The text without passwords; text without URL credentials is returned unchanged.
    """
    if "@" not in text:
        return text

    def scrub(m: re.Match[str]) -> str:
        userinfo, at, hostport = m.group("auth").rpartition("@")
        if not at:
            return m.group(0)
        if not keep_user:
            return f"{m.group('scheme')}{hostport}"
        user, colon, _ = userinfo.partition(":")
        return f"{m.group('scheme')}{user}:***@{hostport}" if colon else m.group(0)

    return _AUTHORITY_RE.sub(scrub, text)


def scheme_of(url: str) -> str:
    """Lower-case scheme of ``url``, or ``""`` for a plain file path."""
    m = _SCHEME_RE.match(url[:64])
    if not m or (len(m.group(1)) == 1 and os.name == "nt"):
        return ""
    return m.group(1).lower()


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password in its user information (``user:pw@``).

    Linear: :func:`urlsplit` and ``str`` methods only (the pattern this replaced backtracked
    quadratically on ``rtsp://cam?`` followed by thousands of ``:``).
    """
    if "://" not in url[:64]:
        return False
    try:
        netloc = urlsplit(url[:MAX_URL_LENGTH]).netloc
    except ValueError:
        return False
    userinfo, at, _ = netloc.rpartition("@")
    return bool(at) and ":" in userinfo


# -- the network allow-list -------------------------------------------------------------


class AddressRefused(ValueError):
    """A camera address is outside the network allow-list (or never allowed).

    ``str(exc)`` is the operator's detail (the address and port, for the worker log);
    :attr:`public` is what any reader may see (no address, no resolution result).
    """

    public = "camera address not allowed by services.streams.allowed_networks"


@dataclass(frozen=True, slots=True)
class NetworkRule:
    """One allow-list entry: a network and the ports allowed in it (empty: every port)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    ports: tuple[tuple[int, int], ...] = ()

    def allows(self, ip: IP, port: int) -> bool:
        """Whether ``ip:port`` is inside this entry."""
        if ip.version != self.network.version or ip not in self.network:
            return False
        return not self.ports or any(lo <= port <= hi for lo, hi in self.ports)


def parse_ports(spec: Iterable[int | str]) -> tuple[tuple[int, int], ...]:
    """Port ranges from ``[554, "8554-8560"]``.

    Raises:
        ValueError: A port outside 1..65535 or a reversed range.
    """
    out: list[tuple[int, int]] = []
    for item in spec:
        text = str(item).strip()
        lo_s, dash, hi_s = text.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if dash else lo
        except ValueError:
            raise ValueError(f"port {text!r} is not a number or a range like 8554-8560") from None
        if not (1 <= lo <= hi <= 65535):
            raise ValueError(f"port range {text!r} is outside 1..65535 or reversed")
        out.append((lo, hi))
    return tuple(out)


class NetworkPolicy:
    """The camera network allow-list (``services.streams.allowed_networks``).

    An address is allowed when an entry's network holds it and the port is one of the
    entry's. Loopback, link-local and every other range are refused unless listed; the
    unspecified address, multicast, broadcast and cloud metadata endpoints always are.
    """

    def __init__(self, rules: Sequence[NetworkRule]) -> None:
        self.rules = tuple(rules)

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str, Iterable[int | str]]]) -> NetworkPolicy:
        """Build from ``(cidr, ports)`` pairs (as in the config).

        Raises:
            ValueError: A CIDR or port that does not parse.
        """
        return cls(
            [
                NetworkRule(ipaddress.ip_network(cidr, strict=False), parse_ports(ports))
                for cidr, ports in entries
            ]
        )

    @classmethod
    def default(cls) -> NetworkPolicy:
        """Private networks on the usual camera ports (:data:`DEFAULT_ALLOWED_NETWORKS`)."""
        return cls.from_entries((n, DEFAULT_CAMERA_PORTS) for n in DEFAULT_ALLOWED_NETWORKS)

    def check(self, ip: IP, port: int) -> None:
        """Refuse ``ip:port`` unless an entry allows it.

        Raises:
            AddressRefused: With the address in the message (operator detail only).
        """
        ip = _canonical(ip)
        if ip.is_unspecified or ip.is_multicast or ip in _METADATA_ADDRESSES:
            raise AddressRefused(f"{_show(ip, port)} is never a camera address")
        if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
            raise AddressRefused(f"{_show(ip, port)} is the broadcast address")
        if not any(rule.allows(ip, port) for rule in self.rules):
            raise AddressRefused(f"{_show(ip, port)} is not in services.streams.allowed_networks")


def _canonical(ip: IP) -> IP:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _show(ip: IP, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def literal_ip(host: str) -> IP | None:
    """The address a host spelled as a number denotes, as the system resolver reads it.

    Besides dotted quads and IPv6, glibc's ``inet_aton`` accepts ``2852039166``,
    ``0251.0376.0251.0376``, ``169.254.43518`` and ``0x7f.1``: all numeric spellings are
    normalised here, so the policy sees the address FFmpeg would connect to.
    """
    h = host.split("%", 1)[0]
    try:
        return _canonical(ipaddress.ip_address(h))
    except ValueError:
        pass
    if not h or len(h) > 64 or not all(c in "0123456789abcdefxABCDEFX." for c in h):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(h))
    except OSError:
        return None


def _is_localhost(host: str) -> bool:
    h = host.lower().rstrip(".")
    return h == "localhost" or h.endswith(".localhost")  # RFC 6761: always loopback


@dataclass(frozen=True, slots=True)
class _Parsed:
    scheme: str
    host: str
    port: int
    parts: SplitResult


def _parse(url: str) -> _Parsed:
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"camera URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"camera URL is malformed: {redact(str(exc))}") from None
    scheme = parts.scheme.lower()
    return _Parsed(scheme, host, port or DEFAULT_PORTS.get(scheme, 0), parts)


def _check_host_name(host: str) -> None:
    h = host.lower().rstrip(".")
    if not h:
        raise ValueError("camera URL has no host")
    if h in METADATA_HOSTS or h.endswith(".metadata.google.internal"):
        raise ValueError(f"camera URL host {host!r} is a cloud metadata endpoint")


def check_url(
    url: str,
    allowed_schemes: Iterable[str] = DEFAULT_SCHEMES,
    policy: NetworkPolicy | None = None,
) -> str:
    """Validate a camera URL received from the API (no DNS lookup: see :func:`resolve_source`).

    Args:
        url: The URL as submitted.
        allowed_schemes: Schemes the operator allows (``StreamsService.allowed_url_schemes``).
        policy: The network allow-list; a host spelled as an address (in any numeric form) or
            ``localhost`` is checked against it here. ``None``: the default allow-list.

    Returns:
        The URL unchanged when accepted.

    Raises:
        ValueError: With a message saying what is wrong (never containing the password).
    """
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"camera URL is longer than {MAX_URL_LENGTH} characters")
    allowed = {s.lower() for s in allowed_schemes}
    if any(ch in url for ch in "\r\n\t\x00 "):
        raise ValueError("camera URL contains whitespace or control characters")
    scheme = scheme_of(url)
    if not scheme:
        raise ValueError(
            "camera URL has no scheme: plain file paths are not accepted from the API "
            f"(allowed schemes: {', '.join(sorted(allowed))})"
        )
    # 'hls+file:', 'crypto+http:' ... nest a second protocol: check every part.
    for part in scheme.split("+"):
        if part in FORBIDDEN_SCHEMES:
            raise ValueError(
                f"camera URL scheme {scheme!r} is an FFmpeg protocol that is never allowed"
            )
    if scheme not in allowed:
        raise ValueError(
            f"camera URL scheme {scheme!r} is not allowed (allowed: {', '.join(sorted(allowed))})"
        )
    p = _parse(url)
    if "|" in url:
        raise ValueError("camera URL contains '|' (FFmpeg nested-protocol syntax)")
    _check_host_name(p.host)
    ip = literal_ip(p.host)
    if ip is None and _is_localhost(p.host):
        ip = ipaddress.IPv4Address("127.0.0.1")
    if ip is not None:
        try:
            (policy or NetworkPolicy.default()).check(ip, p.port)
        except AddressRefused as exc:
            raise ValueError(f"camera URL host: {exc}") from None
    return url


Resolver = Callable[..., list[tuple[Any, ...]]]


def resolve_source(
    url: str, policy: NetworkPolicy | None = None, *, resolver: Resolver | None = None
) -> str:
    """Resolve a live camera URL, check every address, and pin the URL to the first one.

    Called before every connect (first open and each reconnect). Every address the name
    resolves to must be allowed (one bad answer refuses the lot: the next lookup could
    return it), and the returned URL names the checked address, so FFmpeg's own lookup
    cannot be steered elsewhere.

    Args:
        url: A live URL (``rtsp``, ``rtsps``, ``http``, ``https``), without a password.
        policy: The allow-list (``None``: the default one).
        resolver: ``socket.getaddrinfo`` when ``None`` (looked up at each call).

    Returns:
        The URL with its host replaced by the checked address.

    Raises:
        AddressRefused: An address outside the allow-list.
        OSError: The name does not resolve (``socket.gaierror``); transient.
        ValueError: A malformed URL.
    """
    pol = policy or NetworkPolicy.default()
    p = _parse(url)
    _check_host_name(p.host)
    if not p.port:
        raise ValueError(f"camera URL scheme {p.scheme!r} has no default port: give one")
    ip = literal_ip(p.host)
    if ip is not None:
        addresses: list[IP] = [ip]
    else:
        lookup = resolver or socket.getaddrinfo
        infos = lookup(p.host, p.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        addresses = []
        for info in infos:
            sockaddr = info[4]
            a = literal_ip(str(sockaddr[0]))
            if a is not None and a not in addresses:
                addresses.append(a)
        if not addresses:
            raise OSError(f"camera host {p.host!r} resolved to no address")
    for a in addresses:
        pol.check(a, p.port)
    pinned = addresses[0]
    host = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    userinfo = p.parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    if p.parts.port is not None:
        netloc += f":{p.parts.port}"
    return urlunsplit((p.parts.scheme, netloc, p.parts.path, p.parts.query, p.parts.fragment))


def with_password(url: str, password_env: str | None, what: str = "camera password") -> str:
    """Insert the password from environment variable ``password_env`` into ``url``.

    For operator-configured secrets only (the Redis password, camera secrets): a name
    chosen by an API caller must never reach this function.

    Args:
        url: URL, optionally with a user name.
        password_env: Name of the variable; ``None`` leaves the URL unchanged.
        what: What the password is for, in the error message.

    Raises:
        ValueError: The variable is not set.
    """
    if not password_env:
        return url
    pw = os.environ.get(password_env)
    if pw is None:
        raise ValueError(f"environment variable {password_env} ({what}) is not set")
    return with_secret(url, pw)


def with_secret(url: str, password: str, username: str | None = None) -> str:
    """``url`` with ``password`` (and ``username``, when given) as its user information.

    Both are percent-encoded, so :func:`redact` always finds the end of the password.
    """
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = username if username is not None else (p.username or "")
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if p.port is not None:
        netloc += f":{p.port}"
    return urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))


def ffmpeg_options(
    url: str, *, transport: str = "tcp", timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, str]:
    """FFmpeg (PyAV ``av.open``) options for one source.

    Args:
        url: The source (``rtsp://``, ``http(s)://`` or a file path).
        transport: RTSP lower transport, ``"tcp"`` or ``"udp"``.
        timeout_s: Socket and read timeout.

    Returns:
        Options: a protocol whitelist per source kind, timeouts in microseconds, and no
        HTTP redirects (a redirect would leave the checked address).
    """
    us = str(int(timeout_s * 1_000_000))
    scheme = scheme_of(url)
    if scheme in ("rtsp", "rtsps"):
        return {
            "rtsp_transport": transport,
            "timeout": us,  # socket I/O timeout (µs) of the RTSP demuxer
            "rw_timeout": us,
            "protocol_whitelist": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
            "allowed_media_types": "video",
        }
    if scheme in ("http", "https"):
        return {
            "rw_timeout": us,
            "timeout": us,
            "reconnect": "1",
            "reconnect_streamed": "1",
            "reconnect_delay_max": "5",
            "max_redirects": "0",
            "protocol_whitelist": "http,https,tcp,tls",
        }
    # Local file (replay, load tests): files only.
    return {"protocol_whitelist": "file"}
