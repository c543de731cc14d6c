"""The configuration tree: typed, bounded, and strict about typos.

Every model forbids unknown keys (``extra="forbid"``), every field has a title and a
description, numeric fields have bounds and carry their unit in the name. Secrets never
live in the YAML: tokens and passwords are read from environment variables (or files)
named in the config. :func:`load_config` reports *every* problem with its path in the
file, e.g. ``cameras[3].zones[0].polygon: needs at least 3 points``.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import logging
import os
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from citysight.contracts import AlertKind, ObjectClass, Severity

logger = logging.getLogger(__name__)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _f(title: str, description: str, **kw: Any) -> Any:
    return Field(title=title, description=description, **kw)


# -- cameras and zones -----------------------------------------------------------------


class ZoneType(enum.StrEnum):
    """What a zone means to the rules."""

    NO_VENDING = "no_vending"
    RESTRICTED = "restricted"
    TRAFFIC = "traffic"
    FIRE_WATCH = "fire_watch"
    GENERIC = "generic"


Point = Annotated[
    tuple[float, float],
    Field(description="x, y relative to the frame: 0..1 from the top-left corner"),
]


class ZoneConfig(Strict):
    """A polygon in a camera's view."""

    id: str = _f("Zone id", "Unique within the camera.", pattern=ID_PATTERN)
    type: ZoneType = _f("Zone type", "What the zone means to the rules.")
    polygon: list[Point] = _f("Polygon", "Vertices as relative (x, y) in 0..1; at least 3 points.")

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(v) < 3:
            raise ValueError("needs at least 3 points")
        for x, y in v:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"point ({x}, {y}) is outside 0..1 (coordinates are relative)")
        return v


class LineConfig(Strict):
    """A directed counting line in a camera's view."""

    id: str = _f("Line id", "Unique within the camera.", pattern=ID_PATTERN)
    start: Point = _f("Start", "Relative start point.")
    end: Point = _f("End", "Relative end point.")
    direction: Literal["both", "left_to_right", "right_to_left"] = _f(
        "Direction", "Which crossing direction counts, seen from start towards end.", default="both"
    )


class Detector(enum.StrEnum):
    """Detectors a camera can run."""

    FACE = "face"
    PLATE = "plate"
    FIRE_SMOKE = "fire_smoke"
    VENDING = "vending"


class CameraProfile(Strict):
    """How much of a camera's video is analysed."""

    analytics_fps: float = _f(
        "Analytics fps", "Frames per second sent to the detectors.", default=5.0, gt=0, le=60
    )
    keyframe_only: bool = _f(
        "Keyframe only",
        "Decode only keyframes (skips most decode work; effective fps = 1 / GOP seconds).",
        default=False,
    )
    input_width: int = _f(
        "Input width",
        "Frames are resized to this width (px) before inference.",
        default=960,
        ge=64,
        le=7680,
    )
    input_height: int = _f(
        "Input height",
        "Frames are resized to this height (px) before inference.",
        default=540,
        ge=64,
        le=4320,
    )
    no_frame_timeout_s: float = _f(
        "No-frame timeout",
        "A camera with no frame for this long is marked offline.",
        default=10.0,
        gt=0,
        le=3600,
    )
    transport: Literal["tcp", "udp"] = _f("RTSP transport", "RTSP lower transport.", default="tcp")
    loop: bool = _f("Loop", "Loop file sources (replay and load tests).", default=False)


class CameraConfig(Strict):
    """One camera."""

    id: str = _f("Camera id", "Unique id, used in alerts and stream keys.", pattern=ID_PATTERN)
    name: str = _f("Name", "Human-readable name.", default="", max_length=200)
    url: str = _f(
        "URL",
        "rtsp://, rtsps://, http(s):// or a file path. Put credentials in url_password_env, "
        "not here.",
        min_length=1,
    )
    url_password_env: str | None = _f(
        "Password variable",
        "Environment variable holding the camera password (inserted into the URL at open).",
        default=None,
    )
    latitude: float = _f("Latitude", "WGS84 degrees.", ge=-90, le=90)
    longitude: float = _f("Longitude", "WGS84 degrees.", ge=-180, le=180)
    heading_deg: float | None = _f(
        "Heading", "Direction the camera looks, degrees from north.", default=None, ge=0, lt=360
    )
    jurisdiction: str = _f(
        "Jurisdiction", "Administrative area (e.g. township) used for routing.", default="default"
    )
    enabled: bool = _f("Enabled", "Disabled cameras are not read.", default=True)
    detectors: list[Detector] = _f(
        "Detectors",
        "Which detectors run on this camera.",
        default_factory=lambda: list(Detector),
    )
    profile: CameraProfile = _f("Profile", "Analytics profile.", default_factory=CameraProfile)
    zones: list[ZoneConfig] = _f("Zones", "Polygons used by the rules.", default_factory=list)
    lines: list[LineConfig] = _f("Lines", "Counting lines.", default_factory=list)

    @field_validator("url")
    @classmethod
    def _no_inline_password(cls, v: str) -> str:
        if re.match(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]+@", v, re.I):
            raise ValueError(
                "the URL holds a password: put it in an environment variable named by "
                "url_password_env"
            )
        return v

    @model_validator(mode="after")
    def _unique_zone_ids(self) -> CameraConfig:
        ids = [z.id for z in self.zones] + [ln.id for ln in self.lines]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"zone/line ids repeat: {', '.join(dupes)}")
        return self


# -- rules -----------------------------------------------------------------------------


class PersistenceConfig(Strict):
    """N-of-M persistence with hysteresis."""

    on_frames: int = _f(
        "On frames", "Frames with a detection needed to switch on.", default=3, ge=1
    )
    window_frames: int = _f("Window", "Window the on_frames are counted in.", default=5, ge=1)
    off_frames: int = _f(
        "Off frames", "Consecutive quiet frames that switch the condition off.", default=10, ge=1
    )

    @model_validator(mode="after")
    def _order(self) -> PersistenceConfig:
        if self.on_frames > self.window_frames:
            raise ValueError("on_frames cannot exceed window_frames")
        return self


class ScheduleWindow(Strict):
    """A daily time window in the city's local time (site.timezone)."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = _f(
        "Days",
        "Days of the week.",
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    )
    start: str = _f("Start", "HH:MM.", default="00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = _f(
        "End",
        "HH:MM; an end before the start crosses midnight.",
        default="24:00",
        pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$",
    )


class RuleType(enum.StrEnum):
    """How a rule turns detections into an alert."""

    PRESENCE = "presence"
    LINE_CROSSING = "line_crossing"
    DWELL = "dwell"
    COUNT = "count"
    PLATE_HOTLIST = "plate_hotlist"


class RuleConfig(Strict):
    """One alert rule."""

    id: str = _f("Rule id", "Unique id; part of the deterministic alert id.", pattern=ID_PATTERN)
    type: RuleType = _f("Rule type", "How detections become an alert.")
    kind: AlertKind = _f("Alert kind", "Kind of alert raised.")
    classes: list[str] = _f(
        "Classes",
        "Object classes the rule looks at (names of ObjectClass, lower case).",
        default_factory=list,
    )
    cameras: list[str] = _f(
        "Cameras", "Camera id patterns (shell globs).", default_factory=lambda: ["*"]
    )
    zone_types: list[ZoneType] = _f(
        "Zone types",
        "Only detections whose anchor lies in a zone of these types count (empty: anywhere).",
        default_factory=list,
    )
    anchor: Literal["bottom_center", "center"] = _f(
        "Anchor", "Point of a box tested against zones and lines.", default="bottom_center"
    )
    min_score: float = _f("Minimum score", "Detections below are ignored.", default=0.5, ge=0, le=1)
    persistence: PersistenceConfig = _f(
        "Persistence", "N-of-M persistence.", default_factory=PersistenceConfig
    )
    dwell_s: float = _f("Dwell", "Seconds a track must stay (dwell rules).", default=0, ge=0)
    count_min: int = _f("Count", "Objects needed at once (count rules).", default=1, ge=1)
    line_ids: list[str] = _f("Lines", "Lines watched (line_crossing rules).", default_factory=list)
    cooldown_s: float = _f(
        "Cooldown",
        "No repeat alert per (camera, rule, subject) within this time.",
        default=300,
        ge=0,
    )
    severity: Severity = _f("Severity", "Severity of raised alerts.", default=Severity.MEDIUM)
    schedule: list[ScheduleWindow] = _f(
        "Schedule", "Active windows; empty means always.", default_factory=list
    )
    enabled: bool = _f("Enabled", "Disabled rules are skipped.", default=True)

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str]) -> list[str]:
        names = {c.name.lower() for c in ObjectClass}
        bad = [c for c in v if c not in names]
        if bad:
            raise ValueError(f"unknown classes {bad}; known: {sorted(names)}")
        return v

    def applies_to(self, camera_id: str) -> bool:
        """Whether the rule covers a camera."""
        return any(fnmatch.fnmatchcase(camera_id, p) for p in self.cameras)


class HotlistEntry(Strict):
    """A plate of interest."""

    plate: str = _f("Plate", "Plate text without separators.", min_length=2, max_length=16)
    reason: str = _f("Reason", "Why the plate is wanted.", default="")
    severity: Severity = _f("Severity", "Alert severity on a hit.", default=Severity.HIGH)


# -- the city and its incidents -------------------------------------------------------


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        ValueError: Unknown name, or no time-zone database on this machine (the message
            says which, and how to fix it).
    """
    try:
        return zoneinfo.ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        pass
    if not zoneinfo.available_timezones():
        hint = (
            "this machine has no time-zone database: install the tzdata package "
            "(pip install tzdata, or the OS package tzdata)"
        )
    else:
        hint = "not an IANA time zone name (e.g. Asia/Shanghai, Europe/Berlin, UTC)"
    raise ValueError(f"unknown time zone {name!r}: {hint}")


class SiteConfig(Strict):
    """The city (or site) the deployment serves."""

    timezone: str | None = _f(
        "Time zone",
        "IANA time zone of the city, e.g. Asia/Shanghai. Rule schedules are evaluated and "
        "the map shows times in it, whatever zone the hosts run in. Empty: each host's "
        "own zone (containers usually run in UTC).",
        default=None,
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is not None:
            time_zone(v)
        return v

    def zone(self) -> zoneinfo.ZoneInfo | None:
        """The city's time zone (``None``: the host's local zone)."""
        return None if self.timezone is None else time_zone(self.timezone)


class IncidentsConfig(Strict):
    """Cross-camera incident merge: alerts of one kind close in space and time."""

    radius_m: float = _f(
        "Merge radius",
        "An alert joins an open incident of its kind whose first alert lies within this "
        "distance (and within window_s). Merging is global: across cameras, shards and "
        "rules consumers.",
        default=250.0,
        gt=0,
        le=100_000,
    )
    window_s: float = _f(
        "Merge window",
        "An alert joins an open incident only when the incident's latest alert started at "
        "most this many seconds before or after it.",
        default=300.0,
        gt=0,
        le=86_400,
    )


# -- departments, routing, auth ----------------------------------------------------------


class DepartmentConfig(Strict):
    """A department that receives alerts."""

    id: str = _f("Department id", "Unique id.", pattern=ID_PATTERN)
    name: str = _f("Name", "Display name.", default="")
    supervisor: str | None = _f(
        "Supervisor", "Department that gets alerts not acknowledged within the SLA.", default=None
    )
    ack_sla_s: float = _f(
        "Acknowledge SLA", "Seconds to acknowledge before escalation.", default=300, gt=0
    )


class RouteConfig(Strict):
    """Maps (alert kind, jurisdiction) to a department; first match wins."""

    kind: AlertKind | Literal["*"] = _f("Kind", "Alert kind or * for any.")
    jurisdiction: str = _f("Jurisdiction", "Jurisdiction glob.", default="*")
    department: str = _f("Department", "Department id.")


class Scope(enum.StrEnum):
    """Rights a token can carry."""

    ALERTS_READ = "alerts:read"
    ALERTS_DISPATCH = "alerts:dispatch"
    CAMERAS_WRITE = "cameras:write"
    RULES_WRITE = "rules:write"
    EVIDENCE_UNREDACTED = "evidence:unredacted"
    PLATES_QUERY = "plates:query"
    AUDIT_READ = "audit:read"


class TokenConfig(Strict):
    """An API principal; its secret token comes from the environment."""

    name: str = _f("Name", "Principal name (appears in the audit log).", pattern=ID_PATTERN)
    role: str = _f("Role", "Role name, e.g. admin, police.", pattern=ID_PATTERN)
    department: str = _f("Department", "Department id, or * for all departments.")
    scopes: list[Scope] = _f("Scopes", "Rights.", default_factory=lambda: [Scope.ALERTS_READ])
    token_env: str = _f(
        "Token variable",
        "Environment variable holding the bearer token.",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
    )


class RetentionConfig(Strict):
    """How long data is kept (enforced with Redis TTLs)."""

    alert_ttl_s: int = _f(
        "Alert TTL", "Seconds alerts and their events are kept.", default=30 * 86400, ge=60
    )
    evidence_ttl_s: int = _f(
        "Evidence TTL", "Seconds snapshots are kept.", default=7 * 86400, ge=60
    )
    plate_read_ttl_s: int = _f(
        "Plate-read TTL", "Seconds plate reads are kept.", default=3 * 86400, ge=60
    )
    audit_ttl_s: int = _f(
        "Audit TTL", "Seconds audit records are kept.", default=365 * 86400, ge=86400
    )
    detections_max_age_s: int = _f(
        "Detections age",
        "Acknowledged stream entries older than this are trimmed.",
        default=3600,
        ge=60,
    )


# -- services ----------------------------------------------------------------------------


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

    type: Literal["onnxruntime", "triton"] = _f(
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
    decoder: Literal["pyav", "nvdec", "nvdec-cuda"] = _f(
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


class GeoOverlay(Strict):
    """A GeoJSON overlay for the map page."""

    name: str = _f("Name", "Layer name.")
    path: str = _f("Path", "GeoJSON file.")


class MapConfig(Strict):
    """The map page."""

    tile_url: str | None = _f(
        "Tile URL",
        "XYZ tile server template; empty draws a plain background with a graticule.",
        default=None,
    )
    overlays: list[GeoOverlay] = _f("Overlays", "GeoJSON overlays.", default_factory=list)


class CitysightConfig(Strict):
    """The whole configuration."""

    version: Literal[1] = _f("Version", "Config format version.", default=1)
    site: SiteConfig = _f("Site", "The city: time zone.", default_factory=SiteConfig)
    cameras: list[CameraConfig] = _f("Cameras", "Cameras.", default_factory=list)
    rules: list[RuleConfig] = _f("Rules", "Alert rules.", default_factory=list)
    plate_hotlist: list[HotlistEntry] = _f("Hotlist", "Plates of interest.", default_factory=list)
    departments: list[DepartmentConfig] = _f("Departments", "Departments.", default_factory=list)
    routing: list[RouteConfig] = _f(
        "Routing", "Kind/jurisdiction to department; first match wins.", default_factory=list
    )
    tokens: list[TokenConfig] = _f("Tokens", "API principals.", default_factory=list)
    incidents: IncidentsConfig = _f(
        "Incidents", "Cross-camera incident merge.", default_factory=IncidentsConfig
    )
    retention: RetentionConfig = _f("Retention", "TTLs.", default_factory=RetentionConfig)
    services: ServicesConfig = _f("Services", "Services.", default_factory=ServicesConfig)
    map: MapConfig = _f("Map", "Map page.", default_factory=MapConfig)

    @model_validator(mode="after")
    def _references(self) -> CitysightConfig:
        problems: list[str] = []
        cam_ids = [c.id for c in self.cameras]
        dup = sorted({c for c in cam_ids if cam_ids.count(c) > 1})
        if dup:
            problems.append(f"camera ids repeat: {', '.join(dup)}")
        rule_ids = [r.id for r in self.rules]
        dup = sorted({r for r in rule_ids if rule_ids.count(r) > 1})
        if dup:
            problems.append(f"rule ids repeat: {', '.join(dup)}")
        deps = {d.id for d in self.departments}
        for i, route in enumerate(self.routing):
            if deps and route.department not in deps:
                problems.append(f"routing[{i}].department: unknown department {route.department!r}")
        for i, d in enumerate(self.departments):
            if d.supervisor is not None and d.supervisor not in deps:
                problems.append(f"departments[{i}].supervisor: unknown department {d.supervisor!r}")
        for i, t in enumerate(self.tokens):
            if t.department != "*" and deps and t.department not in deps:
                problems.append(f"tokens[{i}].department: unknown department {t.department!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def with_absolute_paths(self, base: str | os.PathLike[str] | None = None) -> CitysightConfig:
        """A copy whose file-system paths are absolute (relative ones taken from ``base``).

        Relative paths mean "relative to where the command was started" (``base``, the
        current directory by default), but the processes that use them may run elsewhere:
        tritonserver runs with its work dir as cwd, Ray actors and Serve replicas in Ray's
        own directories. Paths are therefore made absolute once, where a config enters a
        running deployment: Redis data dir, Ray temp dir, models dir, map overlays and
        file-camera URLs (``~`` is expanded).
        """
        root = Path(base) if base is not None else Path.cwd()

        def absolute(p: str) -> str:
            return os.path.normpath(root / Path(p).expanduser())

        out = self.model_copy(deep=True)
        svc = out.services
        svc.redis.data_dir = absolute(svc.redis.data_dir)
        svc.ray.temp_dir = absolute(svc.ray.temp_dir)
        svc.inference.models_dir = absolute(svc.inference.models_dir)
        for overlay in out.map.overlays:
            overlay.path = absolute(overlay.path)
        for cam in out.cameras:
            if "://" not in cam.url:
                cam.url = absolute(cam.url)
        return out

    def camera(self, camera_id: str) -> CameraConfig | None:
        """The camera with this id, if any."""
        return next((c for c in self.cameras if c.id == camera_id), None)

    def route(self, kind: AlertKind | str, jurisdiction: str) -> str | None:
        """Department for an alert kind in a jurisdiction (first matching route)."""
        for r in self.routing:
            if r.kind in ("*", kind) and fnmatch.fnmatchcase(jurisdiction, r.jurisdiction):
                return r.department
        return None


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists ``path: message`` strings."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s): " + "; ".join(problems))


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in {"tagged-union", "literal"}:
            continue
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def format_validation_error(err: ValidationError) -> list[str]:
    """Turn a pydantic error into ``path: message`` lines."""
    lines = []
    for e in err.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"{_loc(tuple(e['loc']))}: {msg}")
    return lines


def parse_config(data: Any, source: str = "<config>") -> CitysightConfig:
    """Validate an already-parsed YAML/JSON document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): must be a mapping"])
    try:
        return CitysightConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, format_validation_error(err)) from None


def load_config(path: str | os.PathLike[str]) -> CitysightConfig:
    """Load and validate a YAML config file.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid (all problems listed).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"(file): cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(
            str(p), [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]
        ) from None
    return parse_config(data, str(p))


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config file."""
    schema = CitysightConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "citysight configuration"
    return schema


def schema_reference_markdown() -> str:
    """A Markdown reference of every config section and field, generated from the models."""
    out: list[str] = []
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel], path: str) -> None:
        if model in seen:
            return
        seen.add(model)
        out.append(f"\n#### `{path or '(top level)'}` — {model.__doc__ or ''}".rstrip())
        out.append("\n| key | type | default | description |\n|---|---|---|---|")
        nested: list[tuple[type[BaseModel], str]] = []
        for name, f in model.model_fields.items():
            ann = f.annotation
            tname = _type_name(ann)
            default = "required" if f.is_required() else _default_repr(f)
            bounds = ", ".join(
                f"{k} {getattr(m, k)}"
                for m in f.metadata
                for k in ("ge", "gt", "le", "lt")
                if getattr(m, k, None) is not None
            )
            desc = (f.description or "") + (f" ({bounds})" if bounds else "")
            out.append(f"| `{name}` | {tname} | {default} | {desc} |")
            for sub in _models_in(ann):
                nested.append((sub, f"{path}.{name}" if path else name))
        for sub, p in nested:
            walk(sub, p)

    walk(CitysightConfig, "")
    return "\n".join(out).strip() + "\n"


def _models_in(ann: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        found.append(ann)
    for a in getattr(ann, "__args__", ()) or ():
        found.extend(_models_in(a))
    return found


def _type_name(ann: Any) -> str:
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in ann)
    if isinstance(ann, type):
        return ann.__name__
    return (
        str(ann)
        .replace("typing.", "")
        .replace("citysight.config.", "")
        .replace("citysight.contracts.", "")
        .replace("|", "\\|")
    )


def _default_repr(f: Any) -> str:
    if f.default_factory is not None:
        try:
            v = f.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(v, BaseModel):
            return "(section)"
        return f"`{json.dumps(v, default=str)}`" if v != [] else "`[]`"
    v = f.default
    if isinstance(v, enum.Enum):
        v = v.value
    return f"`{json.dumps(v)}`"
