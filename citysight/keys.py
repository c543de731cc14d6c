"""Redis key names of the alert store (see ``serve_app/INTERFACES.md``)."""

from __future__ import annotations

from typing import Final

PREFIX: Final = "citysight:"
FEED_STREAM: Final = "citysight:feed"
ALERTS_ALL: Final = "citysight:alerts:all"
AUDIT_STREAM: Final = "citysight:audit"
AUDIT_HEAD: Final = "citysight:audit:head"
CAMERAS: Final = "citysight:cameras"
CAMERAS_CHANGED: Final = "citysight:cameras:changed"
CAMERA_HEALTH: Final = "citysight:camera-health"
COMPONENTS: Final = "citysight:components"
RULES_CONSUMERS: Final = "citysight:components:rules"
"""Hash: rules consumer name → its own status (``rules`` in COMPONENTS is their summary)."""
DEAD_LETTER_STREAM: Final = "citysight:detections:dead"
RULES_COOLDOWN: Final = "citysight:rules:cooldown"


def alert_key(alert_id: str) -> str:
    """String key holding one alert's JSON."""
    return f"citysight:alert:{alert_id}"


def events_key(alert_id: str) -> str:
    """List key holding one alert's append-only events."""
    return f"citysight:alert:{alert_id}:events"


def dept_index(department: str) -> str:
    """Sorted set of one department's alert ids (score = started_at)."""
    return f"citysight:alerts:dept:{department}"


def camera_system_alerts_key(camera_id: str) -> str:
    """Set of the ids of a camera's open system alerts (``camera_offline``...), to resolve them."""
    return f"citysight:camera:{camera_id}:system-alerts"


def incident_key(incident_id: str) -> str:
    """Sorted set of the alert ids of one cross-camera incident (score = started_at)."""
    return f"citysight:incident:{incident_id}"


def incident_index_keys(kind: str) -> list[str]:
    """Keys of one alert kind's open incidents (see ``serve_app/rules/incidents.py``).

    GEO set of incidents at their first location, zset of their latest alert time, hash of
    their state, hash of the incident given to each alert id (replay memo).
    """
    base = f"citysight:incidents:{kind}"
    return [f"{base}:geo", f"{base}:last", f"{base}:state", f"{base}:alerts"]


def evidence_key(alert_id: str) -> str:
    """String key holding an alert's JPEG snapshot."""
    return f"citysight:evidence:{alert_id}"


def plates_key(plate: str) -> str:
    """Sorted set of reads of one plate (score = read time)."""
    return f"citysight:plates:{plate}"


def text(value: bytes | str | None) -> str | None:
    """Decode a Redis reply value (works with and without ``decode_responses``)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value
