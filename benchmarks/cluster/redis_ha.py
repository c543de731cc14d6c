"""Redis primary + replica with Redis Sentinel, and measuring a failover.

Both Redis servers keep an append-only file; the replica follows the primary with
``replicaof``. Sentinels (Debian's ``redis-sentinel``, or ``redis-server --sentinel``)
monitor the master name ``citysight`` with a majority quorum. Clients never hold a fixed
primary address: they ask the Sentinels (redis-py ``redis.sentinel.Sentinel``), as
``services.redis.sentinels`` configures it.

Timings (see :class:`~benchmarks.cluster.spec.Timings`): ``down-after-milliseconds`` is
how long a silent primary is tolerated before failover starts; 2 s rides out a stall of the
shared 2-core machine (an fsync, a busy moment) without a needless failover, and keeps the
measured write outage at a few seconds. ``failover-timeout`` 6 s also bounds how soon the
same master can fail over again (twice that).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import MasterNotFoundError, Sentinel

from benchmarks.cluster.spec import MASTER_NAME, ClusterSpec, Host

logger = logging.getLogger(__name__)

# what a client sees while the primary is gone and before a replica is promoted
OUTAGE_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    MasterNotFoundError,
    ConnectionResetError,
    OSError,
)


def redis_binary() -> str:
    """Path of Debian's ``redis-server``."""
    path = shutil.which("redis-server")
    if not path:
        raise FileNotFoundError("redis-server not found: apt-get install redis-server")
    return path


def sentinel_argv(conf: Path) -> list[str]:
    """Command that runs a Sentinel with ``conf`` (``redis-sentinel`` when installed)."""
    path = shutil.which("redis-sentinel")
    if path:
        return [path, str(conf)]
    return [redis_binary(), str(conf), "--sentinel"]


# Persistence and replica behaviour of every Redis server, here and in infra/k8s/redis.yaml
# (generated from this list by benchmarks.cluster.manifests).
DURABILITY = (
    "appendonly yes",
    "appendfsync everysec",
    # AOF only: an RDB snapshot would fork a copy of the dataset on a loaded machine
    'save ""',
    # a replica that lost its primary answers reads with possibly old data rather than
    # refusing; writes are refused anyway (replica-read-only)
    "replica-serve-stale-data yes",
    "replica-read-only yes",
)


def sentinel_directives(spec: ClusterSpec, primary_host: str) -> list[str]:
    """The ``sentinel ...`` lines that monitor the master (harness and manifests alike).

    Args:
        spec: The cluster (master name, port, quorum, timings).
        primary_host: Address or DNS name of the initial primary.
    """
    t = spec.timings
    return [
        f"sentinel monitor {MASTER_NAME} {primary_host} {spec.redis_port} {spec.quorum}",
        f"sentinel down-after-milliseconds {MASTER_NAME} {t.sentinel_down_after_ms}",
        f"sentinel failover-timeout {MASTER_NAME} {t.sentinel_failover_timeout_ms}",
        f"sentinel parallel-syncs {MASTER_NAME} {t.sentinel_parallel_syncs}",
    ]


def redis_conf(spec: ClusterSpec, host: Host, folder: Path) -> Path:
    """Write ``redis.conf`` for a Redis server of the cluster; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                f"bind {host.ip} 127.0.0.1",
                f"port {spec.redis_port}",
                # the namespace network is private; protected mode would refuse the replica
                # and the Sentinels, which connect over eth0 without a password
                "protected-mode no",
                "daemonize yes",
                f"pidfile {folder / 'redis.pid'}",
                f"logfile {folder / 'redis.log'}",
                f"dir {folder}",
                *DURABILITY,
                "",
            ]
        )
    )
    return conf


def sentinel_conf(spec: ClusterSpec, host: Host, folder: Path, primary: Host) -> Path:
    """Write ``sentinel.conf`` (Sentinel rewrites it, so it lives in the node's folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "sentinel.conf"
    conf.write_text(
        "\n".join(
            [
                f"bind {host.ip} 127.0.0.1",
                f"port {spec.sentinel_port}",
                "protected-mode no",
                "daemonize yes",
                f"pidfile {folder / 'sentinel.pid'}",
                f"logfile {folder / 'sentinel.log'}",
                f"dir {folder}",
                *sentinel_directives(spec, primary.ip),
                "",
            ]
        )
    )
    return conf


def client(ip: str, port: int, timeout_s: float = 0.5) -> redis.Redis:
    """A redis-py client with short timeouts (a dead host must not stall a probe)."""
    return redis.Redis(
        host=ip,
        port=port,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        decode_responses=True,
    )


def ping(ip: str, port: int) -> bool:
    """Whether a Redis server or Sentinel at ``ip:port`` answers PING."""
    r = client(ip, port)
    try:
        return bool(r.ping())
    except OUTAGE_ERRORS:
        return False
    finally:
        r.close()


def sentinel_client(spec: ClusterSpec, timeout_s: float = 0.5) -> Sentinel:
    """redis-py Sentinel over all of the cluster's Sentinels."""
    return Sentinel(  # type: ignore[no-untyped-call]
        spec.sentinel_addresses,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        decode_responses=True,
    )


def sentinel_view(spec: ClusterSpec) -> dict[str, Any]:
    """The Redis topology as the Sentinels see it.

    Returns:
        ``{"primary": "ip:port" | None, "replicas": [{"address", "flags", "link"}],
        "sentinels": [{"ip", "alive", "primary"}], "agree": bool, "quorum": int,
        "known_sentinels": int}``; ``agree`` is true when every live Sentinel names the
        same primary.
    """
    sentinels = []
    detail: dict[str, Any] | None = None
    for ip, port in spec.sentinel_addresses:
        r = client(ip, port)
        entry: dict[str, Any] = {"ip": ip, "alive": False, "primary": None}
        try:
            addr = _command(r, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            entry["alive"] = True
            if addr:
                entry["primary"] = f"{addr[0]}:{addr[1]}"
            if detail is None:
                master = _command(r, "SENTINEL", "MASTER", MASTER_NAME)
                replicas = _command(r, "SENTINEL", "REPLICAS", MASTER_NAME)
                detail = {"master": _pairs(master), "replicas": [_pairs(x) for x in replicas]}
        except (*OUTAGE_ERRORS, ResponseError):
            pass
        finally:
            r.close()
        sentinels.append(entry)
    named = {s["primary"] for s in sentinels if s["alive"]}
    replicas = []
    known = 0
    if detail is not None:
        known = int(detail["master"].get("num-other-sentinels", 0)) + 1
        for rep in detail["replicas"]:
            replicas.append(
                {
                    "address": f"{rep.get('ip')}:{rep.get('port')}",
                    "flags": rep.get("flags", ""),
                    "link": rep.get("master-link-status", ""),
                }
            )
    return {
        "master_name": MASTER_NAME,
        "primary": next(iter(named)) if len(named) == 1 else None,
        "replicas": replicas,
        "sentinels": sentinels,
        "agree": len(named) == 1 and None not in named,
        "quorum": spec.quorum,
        "known_sentinels": known,
    }


def _command(r: redis.Redis, *args: str) -> Any:
    """``r.execute_command`` (untyped in redis-py) with a typed signature."""
    return r.execute_command(*args)  # type: ignore[no-untyped-call]


def _pairs(flat: Any) -> dict[str, str]:
    """A Sentinel reply (flat list or dict, by redis-py version) as a dict."""
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    items = list(flat)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def ready(spec: ClusterSpec) -> bool:
    """Whether every Sentinel knows the others and the replica is linked to the primary."""
    view = sentinel_view(spec)
    if not view["agree"] or view["known_sentinels"] != spec.sentinels:
        return False
    return any(
        rep["link"] == "ok" and "down" not in rep["flags"] for rep in view["replicas"]
    ) and all(s["alive"] for s in view["sentinels"])


def wait_ready(spec: ClusterSpec, timeout_s: float = 60.0) -> float:
    """Block until :func:`ready`; returns the seconds waited, raises ``TimeoutError``."""
    t0 = time.monotonic()
    while not ready(spec):
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(
                f"Redis/Sentinel not ready after {timeout_s:.0f} s: {sentinel_view(spec)}"
            )
        time.sleep(0.2)
    return time.monotonic() - t0


@dataclass
class SentinelEvents:
    """Sentinel's own event channels (``+sdown``, ``+odown``, ``+switch-master``), timed.

    Subscribes to one live Sentinel in a background thread; :attr:`seen` maps an event name
    to the wall-clock time it was first received.
    """

    spec: ClusterSpec
    channels: tuple[str, ...] = ("+sdown", "+odown", "+try-failover", "+switch-master")
    seen: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _subscribed: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> SentinelEvents:
        self._thread = threading.Thread(target=self._run, name="sentinel-events", daemon=True)
        self._thread.start()
        if not self._subscribed.wait(10):
            raise TimeoutError("could not subscribe to any Sentinel")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        for ip, port in self.spec.sentinel_addresses:
            r = redis.Redis(host=ip, port=port, socket_connect_timeout=0.5, decode_responses=True)
            try:
                ps = r.pubsub()  # type: ignore[no-untyped-call]
                ps.subscribe(*self.channels)
            except OUTAGE_ERRORS:
                r.close()
                continue
            self._subscribed.set()
            try:
                while not self._stop.is_set():
                    msg = ps.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    if msg and msg.get("type") == "message":
                        self.seen.setdefault(str(msg["channel"]), time.time())
            except OUTAGE_ERRORS:
                logger.warning("sentinel %s:%s stopped answering its event channel", ip, port)
            finally:
                with contextlib.suppress(Exception):
                    ps.close()
                r.close()
            return


def write_until_ok(
    spec: ClusterSpec, key: str, deadline_s: float, interval_s: float = 0.05
) -> tuple[float, int]:
    """INCR ``key`` on the Sentinel-discovered primary until one write succeeds.

    Returns:
        (wall-clock time of the first successful write, failed attempts before it);
        raises ``TimeoutError`` after ``deadline_s`` seconds.
    """
    sentinel = sentinel_client(spec)
    t_end = time.monotonic() + deadline_s
    failures = 0
    while True:
        master = sentinel.master_for(  # type: ignore[no-untyped-call]
            MASTER_NAME, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True
        )
        try:
            master.incr(key)
            return time.time(), failures
        except OUTAGE_ERRORS:
            failures += 1
        finally:
            master.close()
        if time.monotonic() > t_end:
            raise TimeoutError(f"no write succeeded through Sentinel within {deadline_s:.0f} s")
        time.sleep(interval_s)
