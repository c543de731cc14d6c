"""Redis clients for every component, direct or through Redis Sentinel.

Components receive one Redis URL string (Serve arguments, actor arguments, the generated
``serveConfigV2``), so Sentinel discovery travels in the URL too::

    redis://[user:password@]host:port/db                  a fixed server
    redis+sentinel://[user:password@]h1:p1,h2:p2/master/db  the primary Sentinel names

A Sentinel client asks the Sentinels for ``master`` on connect and again after a connection
error or a ``READONLY`` reply (the old primary, demoted), so it follows a failover without a
restart. ``services.redis.sentinels`` builds such a URL (:func:`sentinel_url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, unquote

import redis
import redis.asyncio as aredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"
# Sentinels answer in microseconds; a dead one should not hold discovery up for long
SENTINEL_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class SentinelTarget:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def sentinel_url(
    sentinels: list[str] | tuple[str, ...],
    master: str,
    db: int = 0,
    *,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """The ``redis+sentinel://`` URL of ``master`` as known to ``sentinels`` (``host:port``).

    The result carries the password when one is given: pass it to clients, never log it
    unredacted (:func:`citysight.urls.redact`).
    """
    for s in sentinels:
        parse_address(s)
    auth = ""
    if password is not None:
        auth = f"{quote(username or '', safe='')}:{quote(password, safe='')}@"
    return f"{SENTINEL_SCHEME}://{auth}{','.join(sentinels)}/{quote(master, safe='')}/{db}"


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` → ``(host, port)``.

    Raises:
        ValueError: Not ``host:port`` with a port in 1..65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    return host.strip("[]"), int(port)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse a ``redis+sentinel://`` URL.

    Raises:
        ValueError: Not such a URL, no Sentinel, a bad ``host:port``, no master name or a bad db.
    """
    prefix = SENTINEL_SCHEME + "://"
    if not url.startswith(prefix):
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    rest = url[len(prefix) :]
    hosts, _, path = rest.partition("/")
    username = password = None
    if "@" in hosts:
        userinfo, _, hosts = hosts.rpartition("@")
        user, _, pw = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(pw)
    addrs = tuple(parse_address(h) for h in hosts.split(",") if h)
    if not addrs:
        raise ValueError(f"{SENTINEL_SCHEME}:// URL names no Sentinel")
    master, _, db = path.partition("/")
    if not master:
        raise ValueError(f"{SENTINEL_SCHEME}:// URL names no master (…/MASTER/DB)")
    db = db.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"{SENTINEL_SCHEME}:// URL: db {db!r} is not a number")
    return SentinelTarget(addrs, unquote(master), int(db), username, password)


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names its server through Sentinel."""
    return url.startswith(SENTINEL_SCHEME + "://")


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A Redis client for ``url`` (``redis://``, ``rediss://``, ``unix://`` or Sentinel).

    Args:
        url: See the module docstring.
        **kwargs: Client options (``socket_timeout``, ``decode_responses``, ``protocol``...).
    """
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **kwargs)
    t = parse_sentinel_url(url)
    s = Sentinel(  # type: ignore[no-untyped-call]
        list(t.sentinels),
        socket_timeout=SENTINEL_TIMEOUT_S,
        socket_connect_timeout=SENTINEL_TIMEOUT_S,
    )
    master = s.master_for(  # type: ignore[no-untyped-call]
        t.master, db=t.db, username=t.username, password=t.password, **kwargs
    )
    return cast("redis.Redis", master)


def connect_async(url: str, **kwargs: Any) -> aredis.Redis:
    """The asyncio form of :func:`connect`."""
    if not is_sentinel(url):
        return aredis.Redis.from_url(url, **kwargs)
    t = parse_sentinel_url(url)
    s = AsyncSentinel(  # type: ignore[no-untyped-call]
        list(t.sentinels),
        socket_timeout=SENTINEL_TIMEOUT_S,
        socket_connect_timeout=SENTINEL_TIMEOUT_S,
    )
    master = s.master_for(t.master, db=t.db, username=t.username, password=t.password, **kwargs)
    return cast("aredis.Redis", master)
