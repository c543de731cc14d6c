"""Message contracts shared by every layer.

One value type crosses each boundary (docs/architecture.md, "Contracts"):

* :class:`FrameResult` — detections of one decoded frame as parallel numpy arrays
  (struct of arrays), serialised with msgpack onto ``citysight:detections:{shard}``; its
  ``to_msgpack``/``from_msgpack`` are the one wire codec of that stream.
* :class:`Alert` — one alert (or cross-camera incident), JSON on the API and WebSocket,
  msgpack in Redis.
* :class:`AlertEvent` — one lifecycle transition, appended, never rewritten.
* :class:`CameraStatus` — a camera reader's lifecycle state change.

Every message carries ``schema_version``. Readers accept older versions (missing fields
take defaults) and ignore fields they do not know (newer writers), so producers and
consumers can be upgraded one at a time.
"""

from __future__ import annotations

import enum
import hashlib
import math
import numbers
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgpack
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 1
ALERT_SCHEMA_VERSION: Final = 3
"""Version of :class:`Alert`: 2 added ``escalated_to`` (escalation adds departments; the owning
``department`` never changes). Version 1 readers ignore the field and see the owner only.
3 added ``source`` (``camera`` or ``report``) and ``reporter`` (field reports),
:class:`EvidenceRef` ``id``/``source`` (several evidence items per alert), and
``jurisdiction_path`` (city → township → grid ids); older records read as camera alerts with
one snapshot and an empty path, which jurisdiction-scoped principals never see (fail
closed)."""
MAX_TIME_S: Final = 253_402_300_799.0
"""Latest representable time (9999-12-31T23:59:59Z): later or non-finite times are malformed."""


def shard_of(camera_id: str, shards: int) -> int:
    """Stable shard of a camera (independent of Python's hash seed)."""
    digest = hashlib.blake2b(camera_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


class ContractError(ValueError):
    """A message does not satisfy its contract (wrong shape, unknown version...)."""


class ObjectClass(enum.IntEnum):
    """Class vocabulary of every detector (the ``class_ids`` of a :class:`FrameResult`)."""

    FACE = 0
    PLATE = 1
    FIRE = 2
    SMOKE = 3
    PERSON = 4
    VEHICLE = 5
    UMBRELLA = 6
    TABLE = 7
    CHAIR = 8
    BICYCLE = 9
    MOTORCYCLE = 10
    CART = 11
    STALL = 12
    """A stationary foreground object (fallback vending cue)."""


VENDING_CLASSES: Final = frozenset(
    {
        ObjectClass.PERSON,
        ObjectClass.UMBRELLA,
        ObjectClass.TABLE,
        ObjectClass.CHAIR,
        ObjectClass.BICYCLE,
        ObjectClass.MOTORCYCLE,
        ObjectClass.CART,
        ObjectClass.STALL,
    }
)


@dataclass(slots=True)
class FrameResult:
    """Detections of one frame of one camera, as parallel arrays.

    Attributes:
        camera_id: Camera identifier from the config.
        frame_time: Capture (or decode) wall time, Unix seconds.
        frame_no: Frame number within the camera's current session.
        width: Width in pixels of the frame the boxes refer to.
        height: Height in pixels of the frame the boxes refer to.
        boxes: ``(N, 4)`` float32 ``x1, y1, x2, y2`` in pixels.
        scores: ``(N,)`` float32 confidences in ``[0, 1]``.
        class_ids: ``(N,)`` int32 values of :class:`ObjectClass`.
        track_ids: ``(N,)`` int64 per-camera track ids, ``-1`` when untracked.
        extra: Further per-detection columns, each a list of length N
            (for example ``plate_text`` and ``plate_score``).
        snapshot_key: Redis key of a short-lived JPEG of this frame (evidence source),
            empty when none was stored.
        published_at: Wall time the result entered the detections stream
            (for end-to-end latency); 0 when not yet published.
        schema_version: Contract version of the writer.
    """

    camera_id: str
    frame_time: float
    frame_no: int
    width: int = 0
    height: int = 0
    boxes: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    class_ids: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    track_ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    extra: dict[str, list[Any]] = field(default_factory=dict)
    published_at: float = 0.0
    snapshot_key: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32)
        n = len(self.scores)
        boxes = np.asarray(self.boxes, dtype=np.float32)
        self.boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
        self.class_ids = np.asarray(self.class_ids, dtype=np.int32)
        self.track_ids = (
            np.asarray(self.track_ids, dtype=np.int64)
            if len(self.track_ids)
            else np.full(n, -1, np.int64)
        )
        self.validate()

    def __len__(self) -> int:
        return len(self.scores)

    def validate(self) -> None:
        """Check the parallel arrays agree; raise :class:`ContractError` otherwise."""
        n = len(self.scores)
        if self.scores.ndim != 1:
            raise ContractError("scores must be one-dimensional")
        if self.boxes.shape != (n, 4):
            raise ContractError(f"boxes shape {self.boxes.shape} != ({n}, 4)")
        for name in ("class_ids", "track_ids"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ContractError(f"{name} shape {arr.shape} != ({n},)")
        for key, col in self.extra.items():
            if len(col) != n:
                raise ContractError(f"extra[{key!r}] has {len(col)} values, expected {n}")
        if not self.camera_id:
            raise ContractError("camera_id is empty")
        check_time(self.frame_time, "frame_time")
        if not math.isfinite(self.published_at):
            raise ContractError(f"published_at must be finite, got {self.published_at!r}")
        # Non-finite numbers turn into nulls in the alert JSON (unreadable afterwards) and
        # poison rule state: reject them here, at the boundary.
        if n and not _all_finite(self.boxes, self.scores):
            raise ContractError("boxes and scores must be finite")
        texts = self.extra.get("plate_text")
        if texts is not None and not all(t is None or isinstance(t, str) for t in texts):
            raise ContractError("extra['plate_text'] must hold strings (or null)")
        pscores = self.extra.get("plate_score")
        if pscores is not None and not all(
            s is None or (isinstance(s, numbers.Real) and math.isfinite(s)) for s in pscores
        ):
            raise ContractError("extra['plate_score'] must hold finite numbers (or null)")

    def select(self, mask: npt.NDArray[np.bool_]) -> FrameResult:
        """Return a copy holding only the detections where ``mask`` is true."""
        idx = np.flatnonzero(mask)
        return FrameResult(
            camera_id=self.camera_id,
            frame_time=self.frame_time,
            frame_no=self.frame_no,
            width=self.width,
            height=self.height,
            boxes=self.boxes[idx],
            scores=self.scores[idx],
            class_ids=self.class_ids[idx],
            track_ids=self.track_ids[idx],
            extra={k: [v[i] for i in idx] for k, v in self.extra.items()},
            published_at=self.published_at,
            snapshot_key=self.snapshot_key,
        )

    @classmethod
    def concat(cls, parts: list[FrameResult]) -> FrameResult:
        """Merge detections of several detectors run on the same frame."""
        if not parts:
            raise ContractError("nothing to concatenate")
        first = parts[0]
        keys = sorted({k for p in parts for k in p.extra})
        extra: dict[str, list[Any]] = {k: [] for k in keys}
        for p in parts:
            for k in keys:
                extra[k].extend(p.extra.get(k, [None] * len(p)))
        return cls(
            camera_id=first.camera_id,
            frame_time=first.frame_time,
            frame_no=first.frame_no,
            width=first.width,
            height=first.height,
            boxes=np.concatenate([p.boxes for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            class_ids=np.concatenate([p.class_ids for p in parts]),
            track_ids=np.concatenate([p.track_ids for p in parts]),
            extra=extra,
        )

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (JSON-safe)."""
        return {
            "v": self.schema_version,
            "cam": self.camera_id,
            "t": self.frame_time,
            "n": self.frame_no,
            "w": self.width,
            "h": self.height,
            "boxes": self.boxes.round(2).tolist(),
            "scores": self.scores.round(4).tolist(),
            "cls": self.class_ids.tolist(),
            "trk": self.track_ids.tolist(),
            "extra": self.extra,
            "pub": self.published_at,
            "snap": self.snapshot_key,
        }

    def to_msgpack(self) -> bytes:
        """Compact binary form for Redis Streams: arrays travel as raw little-endian bytes."""
        packed: bytes = msgpack.packb(
            {
                "v": self.schema_version,
                "cam": self.camera_id,
                "t": self.frame_time,
                "n": self.frame_no,
                "w": self.width,
                "h": self.height,
                "boxes": self.boxes.astype("<f4").tobytes(),
                "scores": self.scores.astype("<f4").tobytes(),
                "cls": self.class_ids.astype("<i4").tobytes(),
                "trk": self.track_ids.astype("<i8").tobytes(),
                "extra": self.extra,
                "pub": self.published_at,
                "snap": self.snapshot_key,
            },
            use_bin_type=True,
        )
        return packed

    @classmethod
    def from_msgpack(cls, data: bytes) -> FrameResult:
        """Decode :meth:`to_msgpack` output; raises :class:`ContractError` on bad input.

        Whatever field is wrong, a bad entry raises :class:`ContractError` and nothing else.
        Most frames on the detections stream are empty (nothing detected): those are built
        directly from the map with the checks that apply to an empty frame, sharing read-only
        empty arrays, because converting and validating four empty arrays costs more than the
        rules themselves (about 5x per frame); frames with detections take the full path.
        """
        try:
            d: Any = msgpack.unpackb(data, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise ContractError(f"not a msgpack frame result: {exc}") from exc
        if not isinstance(d, dict):
            raise ContractError("frame result must be a map")
        version = d.get("v", 1)
        cam = d.get("cam")
        if (
            d.get("scores", None) != b""
            or d.get("boxes") != b""
            or d.get("extra")
            or not isinstance(version, int)
            or version < 1
            or not cam
            or not isinstance(cam, str)
        ):
            return cls._from_map(d)  # detections, or malformed: the full path says what is wrong
        # Inline on purpose: the fast path is what the rules consumer pays per idle frame.
        try:
            f = object.__new__(cls)
            f.camera_id = cam
            f.frame_time = float(d["t"])
            f.frame_no = int(d["n"])
            f.width = int(d.get("w", 0))
            f.height = int(d.get("h", 0))
            f.published_at = float(d.get("pub", 0.0))
            f.snapshot_key = str(d.get("snap", ""))
            f.schema_version = version
            check_time(f.frame_time, "frame_time")
            if not math.isfinite(f.published_at):
                raise ContractError(f"published_at must be finite, got {f.published_at!r}")
        except ContractError:
            raise
        except Exception as exc:  # OverflowError (n: inf), ValueError, TypeError, ...
            raise ContractError(f"malformed frame result: {type(exc).__name__}: {exc}") from exc
        f.boxes, f.scores = _EMPTY_BOXES, _EMPTY_F32
        f.class_ids, f.track_ids = _EMPTY_I32, _EMPTY_I64
        f.extra = {}
        return f

    @classmethod
    def _from_map(cls, d: dict[str, Any]) -> FrameResult:
        version = d.get("v", 1)
        if not isinstance(version, int) or version < 1:
            raise ContractError(f"bad schema version {version!r}")
        if not isinstance(d.get("cam"), str):
            raise ContractError(f"cam must be a string, got {type(d.get('cam')).__name__}")
        extra = d.get("extra") or {}
        if not isinstance(extra, dict) or not all(isinstance(v, list) for v in extra.values()):
            raise ContractError("extra must map column names to lists")
        try:
            scores = np.frombuffer(d["scores"], "<f4").astype(np.float32)
            n = len(scores)
            return cls(
                camera_id=d["cam"],
                frame_time=float(d["t"]),
                frame_no=int(d["n"]),
                width=int(d.get("w", 0)),
                height=int(d.get("h", 0)),
                boxes=np.frombuffer(d["boxes"], "<f4").reshape(n, 4).astype(np.float32),
                scores=scores,
                class_ids=np.frombuffer(d["cls"], "<i4").astype(np.int32),
                track_ids=np.frombuffer(d.get("trk", b""), "<i8").astype(np.int64),
                extra={str(k): list(v) for k, v in extra.items()},
                published_at=float(d.get("pub", 0.0)),
                snapshot_key=str(d.get("snap", "")),
                schema_version=version,
            )
        except ContractError:
            raise
        except Exception as exc:  # any malformed field (OverflowError for n: inf, ...)
            raise ContractError(f"malformed frame result: {type(exc).__name__}: {exc}") from exc


# Shared by every empty frame the codec decodes (read-only: nothing may write into them).
_EMPTY_BOXES = np.zeros((0, 4), np.float32)
_EMPTY_F32 = np.zeros(0, np.float32)
_EMPTY_I32 = np.zeros(0, np.int32)
_EMPTY_I64 = np.zeros(0, np.int64)
for _a in (_EMPTY_BOXES, _EMPTY_F32, _EMPTY_I32, _EMPTY_I64):
    _a.flags.writeable = False


def _all_finite(*arrays: npt.NDArray[Any]) -> bool:
    """Whether every value is finite (float32 inputs: their float64 sum overflows never)."""
    if sum(a.size for a in arrays) <= 256:
        # A sum is inf/nan iff a term is; on a few values plain floats beat numpy's ufunc
        # overhead (~1 µs against ~14 µs per frame on a busy core).
        return math.isfinite(sum(sum(a.ravel().tolist()) for a in arrays))
    return all(bool(np.isfinite(a).all()) for a in arrays)


def check_time(t: float, name: str) -> None:
    """Raise :class:`ContractError` unless ``t`` is a finite Unix time in ``[0, MAX_TIME_S]``."""
    if not (0.0 <= t <= MAX_TIME_S):  # also false for NaN
        raise ContractError(f"{name} must be a Unix time in [0, {MAX_TIME_S:.0f}], got {t!r}")


@dataclass(slots=True)
class FrameBatch:
    """Decoded frames of several cameras, batched for inference (the mux's output).

    Attributes:
        frames: BGR ``uint8`` arrays ``(H, W, 3)``, already resized to each camera's input.
        camera_ids: Camera of each frame.
        frame_nos: Frame number of each frame.
        frame_times: Capture wall time of each frame (Unix seconds).
        detectors: Names of the detectors to run on each frame (``citysight.config.Detector``
            values such as ``"face"``, ``"plate"``, ``"fire_smoke"``, ``"vending"``).
        options: Per frame, its camera's per-detector settings (detector name → JSON text,
            ``citysight.config.CameraConfig.detector_options``); empty: none for any frame.
    """

    frames: list[npt.NDArray[np.uint8]]
    camera_ids: list[str]
    frame_nos: list[int]
    frame_times: list[float]
    detectors: list[frozenset[str]]
    options: list[Mapping[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.frames)
        for name in ("camera_ids", "frame_nos", "frame_times", "detectors"):
            if len(getattr(self, name)) != n:
                raise ContractError(
                    f"FrameBatch.{name} has {len(getattr(self, name))} items, expected {n}"
                )
        if self.options and len(self.options) != n:
            raise ContractError(f"FrameBatch.options has {len(self.options)} items, expected {n}")
        for i, f in enumerate(self.frames):
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ContractError(
                    f"FrameBatch.frames[{i}] must be uint8 (H, W, 3), got {f.dtype} {f.shape}"
                )

    def __len__(self) -> int:
        return len(self.frames)

    def options_of(self, detector: str, idx: list[int]) -> list[str]:
        """The settings of ``detector`` of frames ``idx`` (``""`` where a camera sent none)."""
        if not self.options:
            return [""] * len(idx)
        return [self.options[i].get(detector, "") for i in idx]


# -- alerts ----------------------------------------------------------------------------


class AlertKind(enum.StrEnum):
    """What an alert is about."""

    FIRE = "fire"
    SMOKE = "smoke"
    FACE = "face"
    PLATE = "plate"
    VENDING = "vending"
    CAMERA_OFFLINE = "camera_offline"
    ANALYTICS_DOWN = "analytics_down"
    ROAD_DAMAGE = "road_damage"
    """Field reports only (no camera rule raises it)."""
    OTHER = "other"
    """Field reports only: anything else a grid worker sees."""


class Severity(enum.StrEnum):
    """Alert severity, lowest to highest."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Numeric order (info = 0 ... critical = 4)."""
        return list(Severity).index(self)


class AlertState(enum.StrEnum):
    """Dispatch lifecycle states (see ``serve_app`` for the allowed transitions)."""

    RAISED = "raised"
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FEEDBACK = "feedback"
    CLOSED = "closed"
    FALSE_ALARM = "false_alarm"


class _Message(BaseModel):
    # Unknown fields from newer writers are ignored; missing ones take defaults.
    model_config = ConfigDict(extra="ignore", use_enum_values=False)

    schema_version: int = SCHEMA_VERSION

    def to_msgpack(self) -> bytes:
        """Binary form for Redis."""
        packed: bytes = msgpack.packb(self.model_dump(mode="json"), use_bin_type=True)
        return packed

    @classmethod
    def from_msgpack(cls, data: bytes) -> Any:
        """Decode :meth:`to_msgpack` output; raises :class:`ContractError` on bad input."""
        try:
            return cls.model_validate(msgpack.unpackb(data, raw=False))
        except Exception as exc:
            raise ContractError(f"malformed {cls.__name__}: {exc}") from exc


class Location(BaseModel):
    """A WGS84 point."""

    model_config = ConfigDict(extra="ignore")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class EvidenceRef(BaseModel):
    """Pointer to stored evidence (a snapshot) and the boxes drawn on it."""

    model_config = ConfigDict(extra="ignore")

    key: str = Field(description="Storage key of the evidence object")
    id: str = Field(
        default="",
        description="Item id under the alert (GET /api/alerts/{id}/evidence/{item}); empty "
        "for the alert's own snapshot (GET /api/alerts/{id}/evidence)",
    )
    source: str = Field(
        default="snapshot", description="snapshot, report, feedback or recheck (who made it)"
    )
    media_type: str = "image/jpeg"
    frame_time: float = 0.0
    boxes: list[list[float]] = Field(default_factory=list)
    class_ids: list[int] = Field(default_factory=list)


def utcnow() -> datetime:
    """Timezone-aware now (UTC)."""
    return datetime.now(UTC)


class Alert(_Message):
    """One alert, or a cross-camera incident when ``camera_ids`` lists several cameras.

    ``department`` is the owner, fixed when the alert is raised. Escalation *adds* the
    supervisor department to ``escalated_to``; it never takes the alert away from its owner.
    Everyone in :meth:`departments` sees the alert and may act on it.
    """

    schema_version: int = ALERT_SCHEMA_VERSION
    id: str
    kind: AlertKind
    severity: Severity
    camera_id: str
    camera_ids: list[str] = Field(default_factory=list)
    location: Location
    jurisdiction: str = ""
    jurisdiction_path: list[str] = Field(
        default_factory=list,
        description="Jurisdiction ids from the city down to ``jurisdiction`` (the store fills "
        "it from the configured hierarchy when the writer left it empty)",
    )
    department: str
    state: AlertState = AlertState.RAISED
    rule_id: str = ""
    subject: str = Field(default="", description="Track id, plate text or zone the alert is about")
    started_at: datetime
    ended_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    score: float = 0.0
    summary: str = ""
    plate_text: str | None = None
    assigned_unit: str | None = None
    outcome: str | None = None
    escalated: bool = False
    escalated_to: list[str] = Field(
        default_factory=list, description="Departments that gained the alert by escalation"
    )
    incident_id: str | None = None
    source: str = Field(
        default="camera", description="camera (raised by a rule) or report (a field report)"
    )
    reporter: str | None = Field(
        default=None, description="Principal who sent the field report (source report)"
    )
    evidence: list[EvidenceRef] = Field(default_factory=list)
    detected_at: float = Field(default=0.0, description="frame_time of the triggering detection")
    raised_at: float = Field(default=0.0, description="Wall time the alert was written")

    def departments(self) -> list[str]:
        """The owning department first, then the departments it was escalated to."""
        return [self.department, *(d for d in self.escalated_to if d != self.department)]

    def to_api(self) -> dict[str, Any]:
        """JSON form used by the REST API and the WebSocket feed."""
        return self.model_dump(mode="json")


def make_alert_id(camera_id: str, rule_id: str, subject: str, window_start: float) -> str:
    """Deterministic alert id: the same trigger always yields the same id.

    Redelivered detections therefore overwrite instead of duplicating.
    ``window_start`` is rounded to whole seconds so float noise cannot split ids.
    """
    key = f"{camera_id}\x1f{rule_id}\x1f{subject}\x1f{int(window_start)}"
    return "al_" + hashlib.sha256(key.encode()).hexdigest()[:20]


class AlertEvent(_Message):
    """One lifecycle transition of an alert (append-only)."""

    alert_id: str
    seq: int = Field(ge=0, description="Position in the alert's event log")
    from_state: AlertState | None
    to_state: AlertState
    actor: str
    at: datetime = Field(default_factory=utcnow)
    note: str = ""
    unit: str | None = None
    outcome: str | None = None
    action: str = Field(
        default="",
        description="What the event records beyond its transition: report (a field report "
        "attached), feedback (photos after handling), verified (the camera re-check saw "
        "nothing), reopened (the camera saw the condition again), recheck_failed (the camera "
        "sent no analysed frames during the re-check); empty for plain transitions",
    )
    evidence: list[str] = Field(
        default_factory=list, description="Ids of evidence items this event added"
    )


class CameraState(enum.StrEnum):
    """Lifecycle state of a camera reader."""

    STARTING = "starting"
    RUNNING = "running"
    STALLED = "stalled"
    OFFLINE = "offline"
    FAILED = "failed"
    STOPPED = "stopped"


class CameraStatus(_Message):
    """A camera reader's state change, published on ``citysight.keys.CAMERA_STATUS_STREAM``."""

    camera_id: str = Field(min_length=1)
    state: CameraState
    at: float = Field(default_factory=time.time, ge=0, le=MAX_TIME_S, allow_inf_nan=False)
    reason: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    analysed: bool | None = Field(
        default=None,
        description="Whether the camera's frames are being analysed: False when decoded "
        "frames have waited longer than streams.analysis_timeout_s with none analysed, "
        "None until the worker knows (camera starting, reader's own messages)",
    )
    analysis_stopped_at: float | None = Field(
        default=None,
        description="Unix time since when no frame was analysed (set while analysed is False)",
    )
