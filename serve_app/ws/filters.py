"""Which feed entries a WebSocket subscriber receives.

The principal's department and jurisdiction scope is always applied first; the client's subscription
(kinds, cameras, minimum severity, bounding box) can only narrow it. Matching works on the
feed entry's index fields (``department`` or, for escalated alerts, ``departments``,
``kind``, ``camera_id``, ``severity``, ``lat``, ``lon``) so the JSON payload is never parsed
per client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from citysight.contracts import AlertKind, Severity
from serve_app.auth import Principal

_SEVERITY_RANK = {s.value: s.rank for s in Severity}
MAX_LIST = 1000


class FilterError(ValueError):
    """A subscription request is malformed."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """Client-chosen narrowing of the feed (``None`` = no constraint)."""

    kinds: frozenset[str] | None = None
    cameras: frozenset[str] | None = None
    min_severity: int = 0
    bbox: tuple[float, float, float, float] | None = None  # min_lon, min_lat, max_lon, max_lat

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Subscription:
        """Build from query parameters or a ``subscribe`` message.

        Args:
            data: ``kinds`` and ``cameras`` (lists or comma-separated strings),
                ``min_severity`` (a :class:`Severity` name), ``bbox``
                (``[min_lon, min_lat, max_lon, max_lat]`` or a comma-separated string).

        Raises:
            FilterError: If a value is malformed.
        """
        kinds = _str_set(data.get("kinds"), "kinds")
        if kinds is not None:
            bad = kinds - {k.value for k in AlertKind}
            if bad:
                raise FilterError(f"unknown kinds: {', '.join(sorted(bad))}")
        cameras = _str_set(data.get("cameras"), "cameras")
        sev = data.get("min_severity")
        rank = 0
        if sev not in (None, ""):
            if str(sev) not in _SEVERITY_RANK:
                raise FilterError(f"min_severity must be one of {', '.join(_SEVERITY_RANK)}")
            rank = _SEVERITY_RANK[str(sev)]
        bbox_raw = data.get("bbox")
        bbox = None
        if bbox_raw not in (None, ""):
            parts = bbox_raw.split(",") if isinstance(bbox_raw, str) else bbox_raw
            try:
                vals = [float(p) for p in parts]
            except (TypeError, ValueError):
                raise FilterError("bbox must be 4 numbers") from None
            if len(vals) != 4 or vals[0] > vals[2] or vals[1] > vals[3]:
                raise FilterError("bbox must be [min_lon, min_lat, max_lon, max_lat]")
            # NaN compares false with everything: it would pass the order check above and
            # then silently match nothing.
            if not all(math.isfinite(v) for v in vals):
                raise FilterError("bbox must be 4 finite numbers")
            lon_ok = -180 <= vals[0] <= vals[2] <= 180
            lat_ok = -90 <= vals[1] <= vals[3] <= 90
            if not (lon_ok and lat_ok):
                raise FilterError("bbox: longitudes in -180..180, latitudes in -90..90")
            bbox = (vals[0], vals[1], vals[2], vals[3])
        return cls(kinds=kinds, cameras=cameras, min_severity=rank, bbox=bbox)


def _str_set(v: Any, name: str) -> frozenset[str] | None:
    if v is None or v == "":
        return None
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, list | tuple) or len(items) > MAX_LIST:
        raise FilterError(f"{name} must be a list of at most {MAX_LIST} strings")
    return frozenset(str(i).strip() for i in items if str(i).strip())


def visible(principal: Principal, sub: Subscription, fields: dict[str, str]) -> bool:
    """Whether a feed entry goes to a subscriber.

    Args:
        principal: The subscriber (department scope, always enforced).
        sub: The subscriber's narrowing filters.
        fields: The feed entry's index fields (decoded strings).

    Returns:
        True when the entry is in scope and passes every filter.
    """
    mtype = fields.get("type", "")
    if not principal.city_wide:
        # Jurisdiction scope covers every message type, camera health included; a message
        # without a path (older writers) is outside it: fail closed.
        path = fields.get("jurisdictions", "")
        if not path or principal.jurisdiction not in path.split(","):
            return False
    if mtype in ("camera_status", "camera_removed"):
        # Camera health is not department data: every authenticated subscriber sees it
        # (the camera list is readable by all roles), subject to the camera filter.
        return sub.cameras is None or fields.get("camera_id", "") in sub.cameras
    # An escalated alert's messages name every department that has it (owner first).
    depts = fields.get("departments")
    if depts:
        if not principal.sees_any(depts.split(",")):
            return False
    elif not principal.sees(fields.get("department", "")):
        return False
    if sub.kinds is not None and fields.get("kind", "") not in sub.kinds:
        return False
    if sub.cameras is not None and fields.get("camera_id", "") not in sub.cameras:
        return False
    if sub.min_severity and _SEVERITY_RANK.get(fields.get("severity", ""), 0) < sub.min_severity:
        return False
    if sub.bbox is not None:
        try:
            lat = float(fields.get("lat", "nan"))
            lon = float(fields.get("lon", "nan"))
        except ValueError:
            return False
        b = sub.bbox
        if not (b[0] <= lon <= b[2] and b[1] <= lat <= b[3]):
            return False
    return True
