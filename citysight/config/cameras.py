"""Cameras, their analytics profile, zones and counting lines."""

from __future__ import annotations

import enum
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
