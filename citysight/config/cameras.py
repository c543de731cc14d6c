"""Cameras, their analytics profile, zones and counting lines."""

from __future__ import annotations

import enum
import json
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from citysight.config.base import ID_PATTERN, Strict, _f
from citysight.urls import MAX_URL_LENGTH, has_password

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


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
    polygon: list[Point] = _f(
        "Polygon", "Vertices as relative (x, y) in 0..1; 3 to 1000 points.", max_length=1000
    )

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


class FireSmokeSensitivity(enum.StrEnum):
    """How readily a camera's fire/smoke detector (the ``det`` tier) reports on video."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


#: The temporal values of each sensitivity (``inference.detectors.fire_smoke_temporal``):
#: frames remembered, frames that need the box, least flicker / drift (grey levels beyond the
#: frame's own change), the network's input long side (px), and the change to the model file's
#: class thresholds. Set from what each value means, not tuned on any clip: ``high`` looks at
#: a finer input (smaller, farther flames) and confirms on less evidence, ``low`` needs more.
FIRE_SMOKE_PRESETS: dict[FireSmokeSensitivity, dict[str, float]] = {
    FireSmokeSensitivity.LOW: {
        "window": 10, "persist": 6, "fire_flicker": 3.0, "smoke_drift": 2.0,
        "input_long_side": 320, "threshold_shift": 0.1,
    },
    FireSmokeSensitivity.NORMAL: {
        "window": 8, "persist": 4, "fire_flicker": 2.0, "smoke_drift": 1.5,
        "input_long_side": 320, "threshold_shift": 0.0,
    },
    FireSmokeSensitivity.HIGH: {
        "window": 6, "persist": 3, "fire_flicker": 1.5, "smoke_drift": 1.0,
        "input_long_side": 416, "threshold_shift": -0.05,
    },
}  # fmt: skip


class FireSmokeCameraConfig(Strict):
    """Per-camera sensitivity of the trained fire/smoke tier on video (presets, overrides)."""

    # Any value set here overrides the preset's; other tiers ignore these.

    sensitivity: FireSmokeSensitivity = _f(
        "Sensitivity",
        "low (fewer alerts, more evidence needed), normal, or high (smaller flames, quicker "
        "alerts, more false ones). docs/detectors.md lists each preset's values.",
        default=FireSmokeSensitivity.NORMAL,
    )
    window: int | None = _f(
        "Window", "Frames remembered per camera (preset when unset).", default=None, ge=2, le=64
    )
    persist: int | None = _f(
        "Persist",
        "Frames of the window that need an overlapping box of the class (at most window).",
        default=None,
        ge=1,
        le=64,
    )
    fire_flicker: float | None = _f(
        "Fire flicker",
        "Least typical frame-to-frame grey change (0..255) inside a fire box beyond the "
        "frame's own change.",
        default=None,
        ge=0,
        le=255,
    )
    smoke_drift: float | None = _f(
        "Smoke drift",
        "Least grey change (0..255) inside a smoke box over the window beyond the frame's own.",
        default=None,
        ge=0,
        le=255,
    )
    fire_threshold: float | None = _f(
        "Fire threshold",
        "The network's fire score threshold (default: the model file's, shifted by the preset).",
        default=None,
        gt=0,
        lt=1,
    )
    smoke_threshold: float | None = _f(
        "Smoke threshold",
        "The network's smoke score threshold (default: the model file's, shifted by the preset).",
        default=None,
        gt=0,
        lt=1,
    )
    input_long_side: int | None = _f(
        "Input long side",
        "Long side (px, a multiple of 32) the frame is resized to for the network: larger "
        "sees smaller flames and costs more CPU.",
        default=None,
        ge=160,
        le=1280,
        multiple_of=32,
    )

    def resolved(self) -> dict[str, float]:
        """The preset's values with this camera's overrides applied."""
        vals = dict(FIRE_SMOKE_PRESETS[self.sensitivity])
        for k in ("window", "persist", "fire_flicker", "smoke_drift", "input_long_side"):
            v = getattr(self, k)
            if v is not None:
                vals[k] = v
        return vals

    @model_validator(mode="after")
    def _persist_within_window(self) -> FireSmokeCameraConfig:
        vals = self.resolved()
        if vals["persist"] > vals["window"]:
            raise ValueError(
                f"persist {int(vals['persist'])} exceeds window {int(vals['window'])} "
                f"(sensitivity {self.sensitivity.value} with the values set here)"
            )
        return self


class CameraConfig(Strict):
    """One camera."""

    id: str = _f("Camera id", "Unique id, used in alerts and stream keys.", pattern=ID_PATTERN)
    name: str = _f("Name", "Human-readable name.", default="", max_length=200)
    url: str = _f(
        "URL",
        "rtsp://, rtsps://, http(s):// or a file path, at most 2048 characters. No password "
        "here: the operator binds it to the camera id in services.streams.camera_secrets.",
        min_length=1,
        max_length=MAX_URL_LENGTH,
    )
    substream_url: str | None = _f(
        "Sub-stream URL",
        "The camera's second, lower-resolution stream, preferred for live view when set "
        "(analytics keep reading url). Same rules as url: no password (the camera's secret "
        "in services.streams.camera_secrets applies when its host matches), the same URL "
        "policy, checked again at every connect.",
        default=None,
        min_length=1,
        max_length=MAX_URL_LENGTH,
    )
    url_password_env: str | None = _f(
        "Password variable (deprecated)",
        "Deprecated, config file only: moved at load into services.streams.camera_secrets "
        "(bound to this camera's URL host). Refused from the camera API.",
        default=None,
        pattern=ENV_NAME_PATTERN,
    )
    latitude: float = _f("Latitude", "WGS84 degrees.", ge=-90, le=90)
    longitude: float = _f("Longitude", "WGS84 degrees.", ge=-180, le=180)
    heading_deg: float | None = _f(
        "Heading", "Direction the camera looks, degrees from north.", default=None, ge=0, lt=360
    )
    jurisdiction: str = _f(
        "Jurisdiction",
        "Administrative area (e.g. township) used for routing and scoping. Left out (default) "
        "while jurisdictions are configured: the deepest area containing the camera's "
        "position; otherwise it must name one of them.",
        default="default",
        max_length=200,
    )
    enabled: bool = _f("Enabled", "Disabled cameras are not read.", default=True)
    detectors: list[Detector] = _f(
        "Detectors",
        "Which detectors run on this camera.",
        default_factory=lambda: list(Detector),
    )
    profile: CameraProfile = _f("Profile", "Analytics profile.", default_factory=CameraProfile)
    zones: list[ZoneConfig] = _f(
        "Zones", "Polygons used by the rules.", default_factory=list, max_length=256
    )
    lines: list[LineConfig] = _f("Lines", "Counting lines.", default_factory=list, max_length=256)
    fire_smoke: FireSmokeCameraConfig = _f(
        "Fire/smoke sensitivity",
        "Evidence the fire/smoke detector needs on this camera's video.",
        default_factory=FireSmokeCameraConfig,
    )

    def detector_options(self) -> dict[str, str]:
        """Per-detector settings this camera sends with its frames (detector name → JSON);
        only non-default ones, so a default camera sends nothing."""
        fs = self.fire_smoke.model_dump(mode="json", exclude_defaults=True)
        return {Detector.FIRE_SMOKE.value: json.dumps(fs, sort_keys=True)} if fs else {}

    @field_validator("url", "substream_url")
    @classmethod
    def _no_inline_password(cls, v: str | None) -> str | None:
        # The length cap (max_length) has refused anything longer than MAX_URL_LENGTH before
        # this runs, and has_password is linear: no URL can make parsing the registry slow.
        if v is not None and has_password(v):
            raise ValueError(
                "the URL holds a password: bind it to the camera id in "
                "services.streams.camera_secrets instead"
            )
        return v

    @model_validator(mode="after")
    def _unique_zone_ids(self) -> CameraConfig:
        ids = [z.id for z in self.zones] + [ln.id for ln in self.lines]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"zone/line ids repeat: {', '.join(dupes)}")
        return self
