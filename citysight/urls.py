"""Camera URL policy: allowed schemes, SSRF guards, redaction and FFmpeg open options.

URLs accepted from the camera API go through :func:`check_url`; FFmpeg is then opened
with :func:`ffmpeg_options`, which always sets socket/read timeouts and a protocol
whitelist so a URL cannot smuggle in ``file:``, ``concat:`` or similar FFmpeg tricks.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps")

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

_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")

# Timeouts FFmpeg takes in microseconds.
DEFAULT_TIMEOUT_S = 5.0


# ``scheme://userinfo@`` anywhere in a text. Userinfo stops at what ends an authority (``/ ? #``)
# or a quoted URL inside a message (whitespace, quotes, ``<>``); it runs to the authority's last
# ``@``, as urlsplit reads it. Passwords in URLs built here are percent-encoded
# (:func:`with_password`), so they never hold those characters.
_USERINFO_RE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#'\"<>]*)@")


def redact(text: str, *, keep_user: bool = True) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (safe to log or return).

    The one credential scrubber: for URLs (``rtsp://admin:pw@host/x`` →
    ``rtsp://admin:***@host/x``) and for texts that quote them (FFmpeg's and PyAV's error
    messages carry the URL they opened, password included).

    Args:
        text: A URL, a file path or any message.
        keep_user: Keep user names (``user:***@``, what logs show); ``False`` removes the whole
            ``user:password@`` (what the API returns: no user information at all).

    Returns:
        The text without passwords; text without URL credentials is returned unchanged.
    """

    def scrub(m: re.Match[str]) -> str:
        user, colon, _ = m.group("userinfo").partition(":")
        if not keep_user:
            return m.group("scheme")
        return f"{m.group('scheme')}{user}:***@" if colon else m.group(0)

    return _USERINFO_RE.sub(scrub, text)


def scheme_of(url: str) -> str:
    """Lower-case scheme of ``url``, or ``""`` for a plain file path."""
    m = _SCHEME_RE.match(url)
    if not m or (len(m.group(1)) == 1 and os.name == "nt"):
        return ""
    return m.group(1).lower()


def _check_host(host: str) -> None:
    h = host.lower().rstrip(".")
    if not h:
        raise ValueError("camera URL has no host")
    if h in METADATA_HOSTS or h.endswith(".metadata.google.internal"):
        raise ValueError(f"camera URL host {host!r} is a cloud metadata endpoint")
    try:
        ip = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        return
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _LINK_LOCAL_V4 or ip in _LINK_LOCAL_V6:
        raise ValueError(
            f"camera URL host {host!r} is link-local (cloud metadata range); not allowed"
        )
    if ip.is_unspecified or ip.is_multicast:
        raise ValueError(f"camera URL host {host!r} is not a unicast address")


def check_url(url: str, allowed_schemes: Iterable[str] = DEFAULT_SCHEMES) -> str:
    """Validate a camera URL received from the API.

    Args:
        url: The URL as submitted.
        allowed_schemes: Schemes the operator allows (``StreamsService.allowed_url_schemes``).

    Returns:
        The URL unchanged when accepted.

    Raises:
        ValueError: With a message saying what is wrong (never containing the password).
    """
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
    parts = re.split(r"[+]", scheme)
    for part in parts:
        if part in FORBIDDEN_SCHEMES:
            raise ValueError(
                f"camera URL scheme {scheme!r} is an FFmpeg protocol that is never allowed"
            )
    if scheme not in allowed:
        raise ValueError(
            f"camera URL scheme {scheme!r} is not allowed (allowed: {', '.join(sorted(allowed))})"
        )
    try:
        parts_ = urlsplit(url)
        host = parts_.hostname or ""
        _ = parts_.port
    except ValueError as exc:
        raise ValueError(f"camera URL is malformed: {exc}") from None
    if "|" in url:
        raise ValueError("camera URL contains '|' (FFmpeg nested-protocol syntax)")
    _check_host(host)
    return url


def with_password(url: str, password_env: str | None, what: str = "camera password") -> str:
    """Insert the password from environment variable ``password_env`` into ``url``.

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
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(p.username or '', safe='')}:{quote(pw, safe='')}@{host}"
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
        Options: a protocol whitelist per source kind and timeouts in microseconds.
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
            "protocol_whitelist": "http,https,tcp,tls",
        }
    # Local file (replay, load tests): files only.
    return {"protocol_whitelist": "file"}
