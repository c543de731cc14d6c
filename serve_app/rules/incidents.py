"""Cross-camera incident merge: alerts of one kind close in space and time share an incident."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from citysight.contracts import Alert, AlertKind

EARTH_RADIUS_M = 6_371_000.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


@dataclass(slots=True)
class _Incident:
    id: str
    kind: AlertKind
    lat: float
    lon: float
    last_t: float
    camera_ids: list[str] = field(default_factory=list)


class IncidentMerger:
    """Assigns ``incident_id`` and ``camera_ids`` to alerts.

    An alert joins the most recent open incident of its kind whose first alert lies within
    ``radius_m`` metres and whose last alert is at most ``window_s`` seconds older;
    otherwise it opens a new incident (id ``in_`` + its alert id). The incident's
    ``camera_ids`` so far are copied onto the alert. ``camera_offline`` alerts are never
    merged. State is per rules consumer (cameras of other shards merge only when the same
    consumer owns them).

    Args:
        radius_m: Merge radius.
        window_s: Merge time window.
    """

    def __init__(self, radius_m: float = 250.0, window_s: float = 300.0) -> None:
        self.radius_m = radius_m
        self.window_s = window_s
        self._open: list[_Incident] = []

    def assign(self, alert: Alert) -> Alert:
        """Return the alert with ``incident_id`` and ``camera_ids`` set."""
        if alert.kind is AlertKind.CAMERA_OFFLINE:
            return alert.model_copy(update={"camera_ids": [alert.camera_id]})
        t = alert.started_at.timestamp()
        self._open = [i for i in self._open if t - i.last_t <= self.window_s * 4]
        lat, lon = alert.location.lat, alert.location.lon
        for inc in reversed(self._open):
            if (
                inc.kind is alert.kind
                and abs(t - inc.last_t) <= self.window_s
                and haversine_m(lat, lon, inc.lat, inc.lon) <= self.radius_m
            ):
                inc.last_t = max(inc.last_t, t)
                if alert.camera_id not in inc.camera_ids:
                    inc.camera_ids.append(alert.camera_id)
                break
        else:
            inc = _Incident(
                "in_" + alert.id.removeprefix("al_"), alert.kind, lat, lon, t, [alert.camera_id]
            )
            self._open.append(inc)
        return alert.model_copy(update={"incident_id": inc.id, "camera_ids": list(inc.camera_ids)})
