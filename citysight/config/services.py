"""External or embedded services: Redis, Ray, inference, HTTP, stream ingest, rules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import field_validator, model_validator

# The names of every backend choice live in citysight.choices (no pydantic there).
from citysight.choices import DETECTOR_TIERS, DecoderName, InferenceBackend
from citysight.config.base import ID_PATTERN, Strict, _f
from citysight.config.cameras import ENV_NAME_PATTERN, Detector
from citysight.config.clips import ClipsConfig
from citysight.config.live import LiveService
from citysight.urls import (
    DEFAULT_ALLOWED_NETWORKS,
    DEFAULT_CAMERA_PORTS,
    DEFAULT_PORTS,
    NetworkPolicy,
    parse_ports,
)


class RedisService(Strict):
    """Redis: external (url) or embedded (started by citysight)."""

    url: str | None = _f(
        "URL",
        "redis://host:port/db of an external Redis; empty starts an embedded one.",
        default=None,
    )
    password_env: str | None = _f(
        "Password variable", "Environment variable with the Redis password.", default=None
    )
    embedded_port: int = _f(
        "Embedded port", "Port of the embedded Redis.", default=6390, ge=1024, le=65535
    )
    data_dir: str = _f(
        "Data dir",
        "Embedded Redis data (AOF) directory; also holds the embedded Redis's generated "
        "password (file redis.password, mode 0600).",
        default=".citysight/redis",
    )
    embedded_password: bool = _f(
        "Embedded password",
        "Start the embedded Redis with a generated password (kept in data_dir/redis.password, "
        "0600) that every citysight client uses; off only for throwaway test servers.",
        default=True,
    )
    maxmemory_mb: int = _f(
        "Max memory",
        "maxmemory of the embedded Redis, in MiB (policy noeviction: a full Redis refuses "
        "writes loudly instead of evicting stream entries, alerts or audit records silently; "
        "every structure citysight writes is bounded, see docs/security.md). 0: no limit.",
        default=2048,
        ge=0,
        le=1048576,
    )
    sentinels: list[str] = _f(
        "Sentinels",
        "host:port of Redis Sentinels; every client finds the primary through them and "
        "follows a failover (instead of url).",
        default_factory=list,
    )
    master_name: str = _f(
        "Master name", "Name of the primary the Sentinels monitor.", default="citysight"
    )
    db: int = _f("Database", "Database number, with sentinels.", default=0, ge=0, le=15)
    alert_replicas: int = _f(
        "Alert replicas",
        "Replicas that must hold a batch's alerts (Redis WAIT) before the rules consumer "
        "acknowledges its detections; 0 acknowledges after the primary's reply. With 1, an "
        "acknowledged alert survives the loss of the primary (docs/cluster.md).",
        default=0,
        ge=0,
        le=8,
    )
    alert_wait_ms: int = _f(
        "Alert wait",
        "How long WAIT waits for alert_replicas; fewer in time and the batch is retried.",
        default=1000,
        ge=1,
        le=60_000,
    )

    @field_validator("sentinels")
    @classmethod
    def _check_sentinels(cls, v: list[str]) -> list[str]:
        from citysight.redisconn import parse_address

        for s in v:
            parse_address(s)  # ValueError -> a validation error at services.redis.sentinels
        return v

    @model_validator(mode="after")
    def _url_or_sentinels(self) -> RedisService:
        if self.url and self.sentinels:
            raise ValueError("give url or sentinels, not both")
        return self

    def connection_url(self) -> str | None:
        """The URL clients use, with the password from ``password_env`` in it.

        ``redis+sentinel://...`` when ``sentinels`` are set (:mod:`citysight.redisconn`),
        else ``url``; ``None``: embedded Redis. The result carries a secret: pass it to
        clients, never log it.

        Raises:
            ValueError: ``password_env`` names a variable that is not set.
        """
        from citysight.urls import with_password

        if self.sentinels:
            from citysight.redisconn import sentinel_url

            password = None
            if self.password_env:
                password = os.environ.get(self.password_env)
                if password is None:
                    raise ValueError(
                        f"environment variable {self.password_env} (Redis password) is not set"
                    )
            return sentinel_url(self.sentinels, self.master_name, self.db, password=password)
        if not self.url:
            return None
        return with_password(self.url, self.password_env, what="Redis password")


class RayService(Strict):
    """Ray: external cluster (address) or a private local one."""

    address: str | None = _f(
        "Address",
        "ray:// or host:port of a Ray cluster; empty starts a private local Ray.",
        default=None,
    )
    num_cpus: int | None = _f("CPUs", "CPUs given to the local Ray.", default=None, ge=1)
    serve_resource: str | None = _f(
        "Serve resource",
        "Ray custom resource every Serve replica (Ingress, RulesConsumer-<i>) asks for a share "
        "of in the generated serveConfigV2, so a cluster places them only on nodes that "
        "advertise it: serve_node, as the KubeRay head and serve-workers groups and the "
        "namespace cluster's head and serve nodes do (docs/cluster.md); empty: any node.",
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
    )
    temp_dir: str = _f(
        "Temp dir",
        "Private temp dir of the local Ray (at most 40 characters: Ray puts Unix sockets "
        "about 65 characters deeper, and a socket path may not exceed 107 bytes).",
        default="/tmp/citysight-ray",
    )

    @field_validator("temp_dir")
    @classmethod
    def _short_temp_dir(cls, v: str) -> str:
        if len(os.path.abspath(v).encode()) > 40:
            raise ValueError(
                f"{v!r} is too long for Ray's Unix socket paths (107 bytes with the session "
                "folder): use a path of at most 40 characters, e.g. /tmp/citysight-ray"
            )
        return v


class InferenceService(Strict):
    """Where detectors run."""

    type: InferenceBackend = _f(
        "Backend",
        "onnxruntime: in-process; triton: a Triton server (embedded if no URL).",
        default="onnxruntime",
    )
    triton_url: str | None = _f(
        "Triton URL", "host:port of Triton gRPC; empty starts the bundled server.", default=None
    )
    models_dir: str = _f(
        "Models dir",
        "Directory with operator-supplied model files (see model_repo/manifest).",
        default="model_repo/files",
    )
    timeout_ms: int = _f("Timeout", "Per-request timeout.", default=2000, ge=10, le=60000)
    max_inflight: int = _f("In-flight", "Requests in flight per worker.", default=4, ge=1, le=256)
    shared_memory: Literal["auto", "system", "cuda", "off"] = _f(
        "Shared memory",
        "How frames reach Triton: auto = system shared memory when Triton is on this host, "
        "else in the gRPC payload; system = POSIX shared memory; cuda = CUDA IPC regions on "
        "cuda_device (same GPU node; needs the cuda-python package, falls back to system "
        "with the reason in /health); off = always in the payload.",
        default="auto",
    )
    cuda_device: int = _f(
        "CUDA device", "GPU of the CUDA shared-memory regions.", default=0, ge=0, le=63
    )
    execution_provider: Literal["cpu", "cuda", "tensorrt"] = _f(
        "Execution provider",
        "ONNX Runtime execution provider of the detectors, in-process and inside the bundled "
        "Triton's python models. cuda and tensorrt need an onnxruntime build that has them "
        "(onnxruntime-gpu); otherwise the detectors warn and run on the CPU. /health reports "
        "the provider each detector really uses.",
        default="cpu",
    )
    ort_max_batch: int | None = _f(
        "ONNX Runtime max batch",
        "Frames per ONNX Runtime call of a batchable detector model; a detector given more "
        "frames at once runs them in chunks of this size. Empty: 8 on cpu (larger batches "
        "measured slower there), 64 on cuda and tensorrt.",
        default=None,
        ge=1,
        le=256,
    )
    tiers: dict[str, list[str]] = _f(
        "Tiers",
        "Tier order per detector, strongest first, e.g. {fire_smoke: [yolo, classical]}; "
        "a detector not listed tries all its tiers. Tiers whose model file is missing or "
        "corrupt are skipped with a warning.",
        default_factory=dict,
    )

    @field_validator("tiers")
    @classmethod
    def _known_detectors(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        known = {d.value for d in Detector}
        bad = sorted(set(v) - known)
        if bad:
            raise ValueError(f"unknown detectors {bad}; known: {sorted(known)}")
        for det, names in v.items():
            tiers = DETECTOR_TIERS[Detector(det).value]
            wrong = [n for n in names if n not in tiers]
            if wrong:
                raise ValueError(f"unknown {det} tiers {wrong}; known: {list(tiers)}")
        return v


class HttpService(Strict):
    """The HTTP/WebSocket API."""

    host: str = _f("Host", "Bind address.", default="127.0.0.1")
    port: int = _f("Port", "Bind port.", default=8000, ge=1, le=65535)
    ingress_replicas: int = _f("Replicas", "Ingress replicas.", default=1, ge=1, le=64)
    max_connections: int = _f(
        "Max connections",
        "Open requests + WebSockets per ingress replica.",
        default=2000,
        ge=5,
        le=100000,
    )
    max_body_bytes: int = _f(
        "Max body",
        "Largest request body accepted (bytes); a larger one is answered 413 without being "
        "read. Requests with a body are authenticated before it is read.",
        default=1_048_576,
        ge=1024,
        le=1_073_741_824,
    )
    local_monitoring: bool = _f(
        "Local monitoring",
        "Callers on the loopback address (127.0.0.1, ::1) read the /health detail and "
        "/metrics without a token; everyone else needs a token with monitoring:read (the "
        "public /health answers only the overall status). Turn off behind a reverse proxy on "
        "the same host that does not set X-Forwarded-For.",
        default=True,
    )
    max_websockets: int | None = _f(
        "Max WebSockets",
        "WebSockets one ingress replica accepts; the rest of max_connections stays for HTTP "
        "requests, so a flood of sockets cannot starve the REST API. Empty: 3/4 of "
        "max_connections. Must be below max_connections.",
        default=None,
        ge=1,
        le=100000,
    )
    ws_max_per_principal: int = _f(
        "WebSockets per principal",
        "Open WebSockets one principal (token) may hold across all replicas; the next one is "
        "refused (HTTP 429 or close 4429).",
        default=20,
        ge=1,
        le=10000,
    )
    ws_recheck_s: float = _f(
        "WebSocket re-check",
        "Interval at which every open WebSocket's principal is looked up again; a revoked "
        "or changed principal's sockets are closed (4401/4403).",
        default=5.0,
        ge=0.1,
        le=300,
    )

    @model_validator(mode="after")
    def _websockets_leave_room(self) -> HttpService:
        if self.max_websockets is not None and self.max_websockets >= self.max_connections:
            raise ValueError(
                f"max_websockets ({self.max_websockets}) must be below max_connections "
                f"({self.max_connections}): the difference is what HTTP requests keep"
            )
        return self

    def websocket_limit(self) -> int:
        """WebSockets one replica accepts (``max_websockets`` or 3/4 of ``max_connections``)."""
        if self.max_websockets is not None:
            return self.max_websockets
        return max(1, self.max_connections * 3 // 4)


class AllowedNetwork(Strict):
    """One entry of the camera network allow-list."""

    cidr: str = _f(
        "Network",
        "IPv4 or IPv6 network in CIDR form (10.20.0.0/16, 127.0.0.1/32, fd12::/48).",
        max_length=64,
    )
    ports: list[int | str] = _f(
        "Ports",
        'Ports allowed in the network: numbers or ranges like "8554-8560"; empty allows '
        "every port.",
        default_factory=list,
        max_length=64,
    )

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        import ipaddress

        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a network in CIDR form: {exc}") from None
        return v

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int | str]) -> list[int | str]:
        parse_ports(v)
        return v


def _host_port(entry: str) -> tuple[str, int | None]:
    """``("cam.example.org", 554)`` from ``cam.example.org:554``; ``[fd12::5]:554`` and bare
    IPv6 addresses too; the port is ``None`` when not given."""
    e = entry.strip().lower()
    if e.startswith("["):
        host, _, rest = e[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif e.count(":") == 1:
        host, _, port = e.partition(":")
    else:
        host, port = e, ""
    return host.rstrip("."), int(port) if port.isdigit() else None


def _default_networks() -> list[AllowedNetwork]:
    return [
        AllowedNetwork(cidr=n, ports=list(DEFAULT_CAMERA_PORTS)) for n in DEFAULT_ALLOWED_NETWORKS
    ]


class CameraSecret(Strict):
    """A camera's password, bound by the operator to the camera id (never by an API caller)."""

    password_env: str | None = _f(
        "Password variable",
        "Environment variable of the stream workers holding the password.",
        default=None,
        pattern=ENV_NAME_PATTERN,
    )
    password_file: str | None = _f(
        "Password file",
        "File holding the password (a mounted secret, e.g. /run/secrets/cam-17); one trailing "
        "newline is dropped. Read at every connect, so a rotated secret applies at the next "
        "reconnect.",
        default=None,
        max_length=4096,
    )
    username: str | None = _f(
        "User name",
        "User name sent with the password; empty keeps the user name of the camera URL.",
        default=None,
        max_length=256,
    )
    hosts: list[str] = _f(
        "Hosts",
        "Hosts (host or host:port, as written in the camera URL) the password "
        "may be sent to. A camera whose URL names another host is not opened (so an API "
        "caller who edits the URL cannot collect the password). Empty: any host the network "
        "allow-list accepts. Filled in from the URL for cameras that still use "
        "cameras[].url_password_env.",
        default_factory=list,
        max_length=64,
    )

    @model_validator(mode="after")
    def _one_source(self) -> CameraSecret:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("give exactly one of password_env and password_file")
        return self

    def allows(self, scheme: str, host: str, port: int | None) -> bool:
        """Whether the password may be sent to ``host:port`` (as written in the URL)."""
        if not self.hosts:
            return True
        h = host.lower().strip("[]").rstrip(".")
        p = port or DEFAULT_PORTS.get(scheme.lower(), 0)
        for entry in self.hosts:
            eh, ep = _host_port(entry)
            if eh == h and (ep is None or ep == p):
                return True
        return False

    def reveal(self) -> str:
        """The password (read now: rotated secrets apply at the next connect).

        Raises:
            ValueError: The variable is not set or the file cannot be read (the message
                names it: for the operator's log, never for an API reader).
        """
        if self.password_env is not None:
            pw = os.environ.get(self.password_env)
            if pw is None:
                raise ValueError(f"environment variable {self.password_env} is not set")
            return pw
        assert self.password_file is not None
        try:
            text = Path(self.password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"password file {self.password_file}: {exc}") from None
        return text[:-1] if text.endswith("\n") else text


class StreamsService(Strict):
    """Stream ingest."""

    workers: int = _f("Workers", "Stream-worker actors.", default=1, ge=1, le=4096)
    node_resource: str | None = _f(
        "Node resource",
        "Ray custom resource every stream worker asks for (a share of it), so workers run only "
        "on nodes that advertise it: stream_node, as the KubeRay stream-workers group and the "
        "namespace cluster's stream nodes do (docs/cluster.md); empty: any node.",
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
    )
    shards: int = _f(
        "Shards", "Detections streams (citysight:detections:{0..n-1}).", default=4, ge=1, le=1024
    )
    max_batch: int = _f("Max batch", "Frames per inference batch.", default=8, ge=1, le=256)
    push_timeout_ms: int = _f(
        "Push timeout", "Wait this long for a batch to fill.", default=40, ge=1, le=10000
    )
    queue_frames: int = _f(
        "Queue", "Frames buffered per camera (drop-oldest).", default=2, ge=1, le=1000
    )
    allowed_url_schemes: list[str] = _f(
        "Allowed schemes",
        "URL schemes accepted from the camera API.",
        default_factory=lambda: ["rtsp", "rtsps"],
    )
    allowed_networks: list[AllowedNetwork] = _f(
        "Allowed networks",
        "Networks and ports stream workers may connect to, checked on the resolved address "
        "at every connect (and on literal addresses when the API adds a camera). Loopback, "
        "link-local and anything not listed are refused; cloud metadata addresses always "
        "are. Default: the private ranges 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 and "
        "fc00::/7 on ports 554, 322, 8554, 80 and 443.",
        default_factory=_default_networks,
        max_length=1024,
    )
    camera_secrets: dict[str, CameraSecret] = _f(
        "Camera secrets",
        "Camera id -> its password (from an environment variable or a file), bound by the "
        "operator. The API cannot name a secret; stream workers insert it into the URL at "
        "connect, never into the registry.",
        default_factory=dict,
    )
    max_restarts: int = _f(
        "Restarts", "Reader restarts allowed per restart window.", default=5, ge=1
    )
    restart_window_s: float = _f("Restart window", "Window for max_restarts.", default=60, gt=0)
    decode_deadline_ms: float = _f(
        "Decode deadline",
        "A frame whose decode takes longer is counted late and skipped.",
        default=500,
        gt=0,
        le=60000,
    )
    decoder: DecoderName = _f(
        "Decoder",
        "pyav: CPU (FFmpeg); nvdec: NVIDIA PyNvVideoCodec to host frames; "
        "nvdec-cuda: to CUDA tensors (GPU nodes without DeepStream).",
        default="pyav",
    )
    status_max_entries: int = _f(
        "Status entries",
        "Hard cap on citysight:camera-status (approximate MAXLEN on every write); the rules "
        "consumers also trim it by age below what they still need. Only a backlog this long "
        "loses status changes.",
        default=100_000,
        ge=1000,
        le=100_000_000,
    )
    analysis_timeout_s: float = _f(
        "Analysis timeout",
        "A running camera whose oldest decoded frame waits longer than this without any "
        "frame of it analysed is reported not analysed (analytics_down alert, degraded "
        "/health).",
        default=10,
        ge=1,
        le=300,
    )

    clips: ClipsConfig = _f(
        "Clips", "Evidence clips around alerts (docs/clips.md).", default_factory=ClipsConfig
    )

    @field_validator("camera_secrets")
    @classmethod
    def _secret_ids(cls, v: dict[str, CameraSecret]) -> dict[str, CameraSecret]:
        import re

        bad = sorted(k for k in v if not re.match(ID_PATTERN, k))
        if bad:
            raise ValueError(f"camera ids {bad} are not valid camera ids")
        return v

    def network_policy(self) -> NetworkPolicy:
        """The allow-list as a :class:`~citysight.urls.NetworkPolicy`."""
        return NetworkPolicy.from_entries((n.cidr, n.ports) for n in self.allowed_networks)


class RulesService(Strict):
    """The rules consumers."""

    consumers: int = _f(
        "Consumers",
        "Rules-consumer deployments; the detection shards are split among them (shard s goes "
        "to consumer s mod N), each one replica with its own consumer name, so a camera's "
        "rule state lives in exactly one place.",
        default=1,
        ge=1,
        le=256,
    )


class ServicesConfig(Strict):
    """External or embedded services."""

    redis: RedisService = _f("Redis", "Redis.", default_factory=RedisService)
    ray: RayService = _f("Ray", "Ray.", default_factory=RayService)
    inference: InferenceService = _f("Inference", "Detectors.", default_factory=InferenceService)
    http: HttpService = _f("HTTP", "API.", default_factory=HttpService)
    streams: StreamsService = _f("Streams", "Ingest.", default_factory=StreamsService)
    rules: RulesService = _f("Rules", "Rules consumers.", default_factory=RulesService)
    live: LiveService = _f("Live view", "Live view of cameras.", default_factory=LiveService)

    @model_validator(mode="after")
    def _consumers_have_shards(self) -> ServicesConfig:
        if self.rules.consumers > self.streams.shards:
            raise ValueError(
                f"rules.consumers ({self.rules.consumers}) is more than streams.shards "
                f"({self.streams.shards}): a consumer would own no shard"
            )
        return self

    def rules_shard_groups(self) -> list[list[int]]:
        """The shards of each rules consumer (shard ``s`` goes to consumer ``s mod N``)."""
        n = self.rules.consumers
        return [list(range(i, self.streams.shards, n)) for i in range(n)]
