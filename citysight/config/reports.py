"""Field reports from grid workers' phones: kinds, photo limits, merging into open alerts."""

from __future__ import annotations

from pydantic import field_validator

from citysight.config.base import Strict, _f
from citysight.contracts import AlertKind

SYSTEM_KIND_VALUES = frozenset({AlertKind.CAMERA_OFFLINE.value, AlertKind.ANALYTICS_DOWN.value})


class ReportsConfig(Strict):
    """``POST /api/reports``: what may be reported and how photos are checked."""

    kinds: list[AlertKind] = _f(
        "Kinds",
        "Alert kinds a field report may carry (system kinds are not reportable).",
        default_factory=lambda: [
            AlertKind.VENDING,
            AlertKind.FIRE,
            AlertKind.SMOKE,
            AlertKind.ROAD_DAMAGE,
            AlertKind.OTHER,
        ],
        min_length=1,
    )
    attach_radius_m: float = _f(
        "Attach radius",
        "A report joins an open alert of the same kind within this distance (metres) "
        "instead of raising a new one.",
        default=100.0,
        ge=0,
        le=10_000,
    )
    attach_window_s: float = _f(
        "Attach window",
        "... and raised at most this many seconds ago.",
        default=3600.0,
        ge=0,
        le=30 * 86400,
    )
    camera_radius_m: float = _f(
        "Camera radius",
        "The nearest camera within this distance (metres) that runs a rule of the report's "
        "kind is the report's camera: it re-checks the report when it is resolved.",
        default=150.0,
        ge=0,
        le=10_000,
    )
    max_photos: int = _f("Max photos", "Photos per report or feedback.", default=4, ge=1, le=20)
    max_photo_bytes: int = _f(
        "Max photo size",
        "Largest photo file accepted (bytes). Keep services.http.max_body_bytes at least "
        "max_photos times this, or large uploads are refused as a whole (413).",
        default=6_000_000,
        ge=10_000,
        le=50_000_000,
    )
    max_pixels: int = _f(
        "Max pixels",
        "Largest photo accepted, width times height (decompression bombs are refused "
        "before they are decoded).",
        default=40_000_000,
        ge=10_000,
        le=200_000_000,
    )
    max_side_px: int = _f(
        "Stored size",
        "Photos are stored re-encoded (which drops EXIF and any other metadata) with their "
        "longer side at most this many pixels.",
        default=2048,
        ge=256,
        le=8192,
    )

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[AlertKind]) -> list[AlertKind]:
        bad = [k.value for k in v if k.value in SYSTEM_KIND_VALUES]
        if bad:
            raise ValueError(f"system kinds cannot be reported: {', '.join(bad)}")
        return list(dict.fromkeys(v))
