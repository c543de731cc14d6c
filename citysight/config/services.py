"""External or embedded services: Redis, Ray, inference, HTTP, stream ingest, rules."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import field_validator, model_validator

# The names of every backend choice live in citysight.choices (no pydantic there).
from citysight.choices import DETECTOR_TIERS, DecoderName, InferenceBackend
from citysight.config.base import Strict, _f
from citysight.config.cameras import Detector


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
        "Data dir", "Embedded Redis data (AOF) directory.", default=".citysight/redis"
    )

    def connection_url(self) -> str | None:
        """``url`` with the password from ``password_env`` in it (``None``: embedded Redis).

        The result carries a secret: pass it to clients, never log it.

        Raises:
            ValueError: ``password_env`` names a variable that is not set.
        """
        if not self.url:
            return None
        from citysight.urls import with_password

        return with_password(self.url, self.password_env, what="Redis password")


class RayService(Strict):
    """Ray: external cluster (address) or a private local one."""

    address: str | None = _f(
        "Address",
        "ray:// or host:port of a Ray cluster; empty starts a private local Ray.",
        default=None,
    )
    num_cpus: int | None = _f("CPUs", "CPUs given to the local Ray.", default=None, ge=1)
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


class StreamsService(Strict):
    """Stream ingest."""

    workers: int = _f("Workers", "Stream-worker actors.", default=1, ge=1, le=4096)
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
    analysis_timeout_s: float = _f(
        "Analysis timeout",
        "A running camera whose oldest decoded frame waits longer than this without any "
        "frame of it analysed is reported not analysed (analytics_down alert, degraded "
        "/health).",
        default=10,
        ge=1,
        le=300,
    )


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
