"""What a cluster is made of: hosts, their addresses and roles, ports and failure timings.

A :class:`ClusterSpec` is plain data (it round-trips through JSON into the run folder's
``state.json``), so ``status`` and ``down`` in another process see the same layout that
``up`` built.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.cluster.netns import IFNAMSIZ

DEFAULT_PREFIX = "cscl"
DEFAULT_SUBNET = "10.213.0.0/24"
MASTER_NAME = "citysight"

# Ray custom resources that mark a node's role; the same labels the KubeRay manifests give
# their head and worker groups, so placement tested here is placement there.
SERVE_NODE = "serve_node"
STREAM_NODE = "stream_node"

# services.redis.alert_replicas / alert_wait_ms of the city on the cluster and of the
# KubeRay config: an alert is acknowledged once this many replicas hold it (docs/cluster.md).
ALERT_REPLICAS = 1
ALERT_WAIT_MS = 1000

# Share of a role resource each actor or Serve replica asks for (any number fit on a node).
ROLE_SHARE = 0.01

# host kinds
RAY_HEAD = "ray-head"
RAY_WORKER = "ray-worker"
REDIS = "redis"
SENTINEL = "sentinel"
CLIENT = "client"

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,5}$")


@dataclass(frozen=True)
class Host:
    """One network namespace of the cluster.

    Attributes:
        name: Short name (``head``, ``stream1``, ``serve1``, ``redis1``, ``sent1``, ``client``).
        kind: One of ``ray-head``, ``ray-worker``, ``redis``, ``sentinel``, ``client``.
        ip: Its address on the cluster's /24.
        resources: Ray custom resources of a Ray node (its role labels).
    """

    name: str
    kind: str
    ip: str
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def is_ray(self) -> bool:
        """Whether a Ray node runs on this host."""
        return self.kind in (RAY_HEAD, RAY_WORKER)


@dataclass(frozen=True)
class Timings:
    """Failure-detection settings (milliseconds), chosen for a loaded 2-core machine.

    Attributes:
        ray_health_check_period_ms: How often the GCS health-checks each raylet.
        ray_health_check_timeout_ms: How long one health check may take.
        ray_health_check_failure_threshold: Failed checks in a row before a node is dead.
        sentinel_down_after_ms: Silence before a Sentinel thinks the primary is down.
        sentinel_failover_timeout_ms: Sentinel's failover timeout (a second failover of
            the same master waits twice this long).
        sentinel_parallel_syncs: Replicas resynchronised with a new primary at once.
    """

    ray_health_check_period_ms: int = 1000
    ray_health_check_timeout_ms: int = 2000
    ray_health_check_failure_threshold: int = 3
    sentinel_down_after_ms: int = 2000
    sentinel_failover_timeout_ms: int = 6000
    sentinel_parallel_syncs: int = 1


@dataclass(frozen=True)
class ClusterSpec:
    """Layout of a namespace cluster.

    Attributes:
        prefix: Names every namespace, link and folder (``<prefix>-head``...); 2–6 of
            ``[a-z0-9]``, starting with a letter.
        subnet: A /24 (or larger) private range no interface of this machine uses.
        stream_nodes: Ray workers with the ``stream_node`` role.
        serve_nodes: Ray workers with the ``serve_node`` role (the head has it too).
        sentinels: Number of Redis Sentinels (quorum is a majority).
        num_cpus: Logical CPUs each Ray node offers (scheduling tokens, not cores).
        object_store_mb: Plasma store size of each Ray node.
        gcs_port: The head's GCS port (each namespace has its own port space).
        redis_port: Port of both Redis servers.
        sentinel_port: Port of every Sentinel.
        client: Also make a ``client`` namespace (subscribers outside the cluster).
        timings: Failure-detection settings.
        run_root: Folder for temp dirs, configs and logs; short, because Ray puts Unix
            sockets under it (108-byte path limit). Defaults to ``/tmp/<prefix>``.
    """

    prefix: str = DEFAULT_PREFIX
    subnet: str = DEFAULT_SUBNET
    stream_nodes: int = 2
    serve_nodes: int = 0
    sentinels: int = 3
    num_cpus: int = 2
    object_store_mb: int = 128
    gcs_port: int = 6379
    redis_port: int = 6379
    sentinel_port: int = 26379
    client: bool = True
    timings: Timings = field(default_factory=Timings)
    run_root: str = ""

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(
                f"prefix {self.prefix!r}: use 2-6 characters of [a-z0-9] starting with a letter"
            )
        net = self.network
        if not net.is_private:
            raise ValueError(f"subnet {self.subnet}: use a private range (10/8, 172.16/12...)")
        if net.prefixlen > 24:
            raise ValueError(f"subnet {self.subnet}: needs at least a /24")
        if self.stream_nodes < 0 or self.serve_nodes < 0 or self.stream_nodes > 9:
            raise ValueError("stream_nodes must be 0..9 and serve_nodes >= 0")
        if self.serve_nodes > 9:
            raise ValueError("serve_nodes must be 0..9")
        if self.sentinels < 1 or self.sentinels > 9:
            raise ValueError("sentinels must be 1..9 (3 is the usual)")
        if self.object_store_mb < 80:
            raise ValueError("object_store_mb must be at least 80 (Ray's minimum is 75 MiB)")
        if not self.run_root:
            object.__setattr__(self, "run_root", f"/tmp/{self.prefix}")
        if len(self.run_root) > 24:
            raise ValueError(
                f"run_root {self.run_root!r} is too long: Ray's socket paths under it must "
                "stay below 108 bytes; use at most 24 characters"
            )

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The cluster's subnet."""
        return ipaddress.IPv4Network(self.subnet, strict=True)

    @property
    def root(self) -> Path:
        """The run folder."""
        return Path(self.run_root)

    @property
    def bridge(self) -> str:
        """Name of the bridge in the root namespace."""
        return f"{self.prefix}-br"

    @property
    def bridge_ip(self) -> str:
        """The bridge's address (the root namespace's foot on the cluster network)."""
        return str(self.network.network_address + 1)

    @property
    def quorum(self) -> int:
        """Sentinels that must agree the primary is down (a majority)."""
        return self.sentinels // 2 + 1

    def _ip(self, offset: int) -> str:
        return str(self.network.network_address + offset)

    @property
    def hosts(self) -> list[Host]:
        """Every host, head first; addresses are fixed offsets in the subnet."""
        hosts = [Host("head", RAY_HEAD, self._ip(2), {SERVE_NODE: 1.0})]
        hosts += [
            Host(f"stream{i}", RAY_WORKER, self._ip(10 + i), {STREAM_NODE: 1.0})
            for i in range(1, self.stream_nodes + 1)
        ]
        hosts += [
            Host(f"serve{i}", RAY_WORKER, self._ip(40 + i), {SERVE_NODE: 1.0})
            for i in range(1, self.serve_nodes + 1)
        ]
        hosts += [Host("redis1", REDIS, self._ip(21)), Host("redis2", REDIS, self._ip(22))]
        hosts += [
            Host(f"sent{i}", SENTINEL, self._ip(30 + i)) for i in range(1, self.sentinels + 1)
        ]
        if self.client:
            hosts.append(Host("client", CLIENT, self._ip(50)))
        for h in hosts:
            if len(self.ns(h.name)) > IFNAMSIZ:
                raise ValueError(f"name {self.ns(h.name)!r} exceeds {IFNAMSIZ} characters")
        return hosts

    def host(self, name: str) -> Host:
        """The host called ``name``; raises ``KeyError`` naming the valid ones."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no host {name!r}; hosts: {', '.join(h.name for h in self.hosts)}")

    def ns(self, name: str) -> str:
        """Namespace (and root-side veth) name of host ``name``."""
        return f"{self.prefix}-{name}"

    @property
    def gcs_address(self) -> str:
        """``ip:port`` of the Ray head's GCS (what ``RAY_ADDRESS`` is set to)."""
        return f"{self.host('head').ip}:{self.gcs_port}"

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``(ip, port)`` of every Sentinel (``services.redis.sentinels``)."""
        return [(h.ip, self.sentinel_port) for h in self.hosts if h.kind == SENTINEL]

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (for ``state.json``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterSpec:
        """Inverse of :meth:`to_json`; unknown keys are an error."""
        data = dict(data)
        timings = Timings(**data.pop("timings", {}))
        return cls(timings=timings, **data)
