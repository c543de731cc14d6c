"""Alert rules: persistence, schedules, rule types, the plate hotlist."""

from __future__ import annotations

import enum
import fnmatch
from typing import Literal

from pydantic import field_validator, model_validator

from citysight.config.base import ID_PATTERN, Strict, _f
from citysight.config.cameras import ZoneType
from citysight.contracts import AlertKind, ObjectClass, Severity
from citysight.plates import normalise_plate


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
    recheck_s: float = _f(
        "Re-check",
        "Seconds the camera keeps watching after an alert of this rule is resolved: the "
        "condition coming back reopens the alert (actor camera-check), none verifies it. "
        "0: no re-check.",
        default=0,
        ge=0,
        le=86400,
    )
    recheck_close: bool = _f(
        "Close when verified",
        "Close the alert when the camera re-check saw nothing (otherwise it stays resolved "
        "with a verified event).",
        default=False,
    )

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

    @field_validator("plate")
    @classmethod
    def _plate(cls, v: str) -> str:
        # An entry of separators only would be the unreadable plate ("") once normalised.
        if len(normalise_plate(v)) < 2:
            raise ValueError(f"hotlist plate {v!r} has fewer than 2 plate characters")
        return v
