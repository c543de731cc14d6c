"""Default rules per alert kind (used when the config lists no rules)."""

from __future__ import annotations

from citysight.config import PersistenceConfig, RuleConfig, RuleType, ScheduleWindow, ZoneType
from citysight.contracts import VENDING_CLASSES, AlertKind, Severity


def default_rules(
    *,
    vending_dwell_s: float = 300.0,
    restricted_hours: tuple[str, str] = ("22:00", "06:00"),
) -> list[RuleConfig]:
    """Sensible starting rules.

    * fire / smoke: anywhere, 3 of 5 frames (short persistence: a real fire keeps burning,
      a reflection flickers), off after 10 quiet frames, 5 min cooldown.
    * vending: a vending object (person, umbrella, table, cart, stall...) tracked inside a
      ``no_vending`` zone for ``vending_dwell_s``.
    * face: a face in a ``restricted`` zone during ``restricted_hours`` (crosses midnight).
    * plate: hotlist hits only (every read is stored as a plate-read event anyway).

    Args:
        vending_dwell_s: Seconds a vending object must stay in a ``no_vending`` zone.
        restricted_hours: Local ``(start, end)`` of the restricted-zone schedule.
    """
    quick = PersistenceConfig(on_frames=3, window_frames=5, off_frames=10)
    return [
        RuleConfig(id="fire", type=RuleType.PRESENCE, kind=AlertKind.FIRE, classes=["fire"],
                   min_score=0.5, persistence=quick, cooldown_s=300,
                   severity=Severity.CRITICAL, anchor="center"),
        RuleConfig(id="smoke", type=RuleType.PRESENCE, kind=AlertKind.SMOKE, classes=["smoke"],
                   min_score=0.5, persistence=quick, cooldown_s=300,
                   severity=Severity.HIGH, anchor="center"),
        RuleConfig(id="vending", type=RuleType.DWELL, kind=AlertKind.VENDING,
                   classes=sorted(c.name.lower() for c in VENDING_CLASSES),
                   zone_types=[ZoneType.NO_VENDING], dwell_s=vending_dwell_s, cooldown_s=1800,
                   severity=Severity.LOW),
        RuleConfig(id="face_restricted", type=RuleType.PRESENCE, kind=AlertKind.FACE,
                   classes=["face"], zone_types=[ZoneType.RESTRICTED], anchor="center",
                   persistence=PersistenceConfig(on_frames=2, window_frames=3, off_frames=10),
                   schedule=[ScheduleWindow(start=restricted_hours[0],
                                            end=restricted_hours[1])],
                   cooldown_s=600, severity=Severity.MEDIUM),
        RuleConfig(id="plate_hotlist", type=RuleType.PLATE_HOTLIST, kind=AlertKind.PLATE,
                   classes=["plate"], min_score=0.3, cooldown_s=600, severity=Severity.HIGH),
    ]  # fmt: skip
