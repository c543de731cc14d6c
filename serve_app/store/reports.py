"""Field reports: a grid worker's photos and position become an alert, or join one.

A report raises an alert with ``source = "report"`` (routed by kind and jurisdiction like
any alert), or, when an open alert of the same kind was raised within
``reports.attach_radius_m`` and ``reports.attach_window_s``, adds its photos to that alert
with an event (``action = "report"``). The nearest camera within ``reports.camera_radius_m``
that runs a rule of the report's kind becomes the alert's camera: the camera re-check
watches it once the alert is resolved. Each principal's reports are indexed
(``citysight:reports:by:{name}``) so a reporter can follow their states without
``alerts:read``.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

from citysight import keys
from citysight.config import CameraConfig, CitysightConfig, Detector, RuleConfig
from citysight.contracts import Alert, AlertKind, EvidenceRef, Location, Severity
from citysight.rulesets import default_rules
from serve_app.photos import CleanPhoto
from serve_app.store.alerts import AlertStore
from serve_app.store.evidence import EvidenceStore
from serve_app.store.lifecycle import OPEN_STATES

REPORT_SOURCE = "report"
_SEVERITY = {
    AlertKind.FIRE: Severity.CRITICAL,
    AlertKind.SMOKE: Severity.HIGH,
    AlertKind.VENDING: Severity.LOW,
}
EARTH_RADIUS_M = 6_371_000.0


def distance_m(a: Location, b: Location) -> float:
    """Great-circle distance (haversine), metres."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


KIND_DETECTOR: dict[AlertKind, Detector] = {
    AlertKind.FIRE: Detector.FIRE_SMOKE,
    AlertKind.SMOKE: Detector.FIRE_SMOKE,
    AlertKind.VENDING: Detector.VENDING,
    AlertKind.FACE: Detector.FACE,
    AlertKind.PLATE: Detector.PLATE,
}
"""The detector whose detections a rule of each kind looks at."""


def can_watch(rule: RuleConfig, cam: CameraConfig) -> bool:
    """Whether ``cam`` can see what ``rule`` looks for: the rule covers it, the camera runs
    the rule's detector, and has a zone of the rule's zone types (when it names some)."""
    if not rule.applies_to(cam.id):
        return False
    det = KIND_DETECTOR.get(rule.kind)
    if det is not None and det not in cam.detectors:
        return False
    return not rule.zone_types or any(z.type in rule.zone_types for z in cam.zones)


def recheck_rules(cfg: CitysightConfig) -> list[RuleConfig]:
    """The enabled rules that re-check (``recheck_s`` > 0)."""
    return [r for r in (cfg.rules or default_rules()) if r.enabled and r.recheck_s > 0]


def recheck_rule(
    cfg: CitysightConfig, alert: Alert, rules: list[RuleConfig] | None = None
) -> RuleConfig | None:
    """The rule that re-checks ``alert`` on its camera, if any (``recheck_s`` > 0).

    A camera alert: its own rule. A field report: the first enabled rule of the report's
    kind that covers the report's camera.

    Args:
        cfg: Configuration.
        alert: The resolved alert.
        rules: :func:`recheck_rules` of ``cfg``, when the caller has them already.
    """
    rules = recheck_rules(cfg) if rules is None else rules
    if not alert.camera_id:
        return None
    if alert.source != REPORT_SOURCE:
        return next((r for r in rules if r.id == alert.rule_id), None)
    return next((r for r in rules if r.kind == alert.kind and r.applies_to(alert.camera_id)), None)


@dataclass(frozen=True, slots=True)
class ReportResult:
    """What a report did: the alert it raised or joined."""

    alert: Alert
    created: bool
    photo_ids: list[str]


class ReportStore:
    """Field reports over the alert and evidence stores.

    Args:
        r: Redis client.
        cfg: Configuration (``reports``, routing, rules, cameras).
        alerts: The alert store.
        evidence: The evidence store (photos are items of the alert).
        cameras: The camera registry's listing (runtime cameras override config ones).
    """

    def __init__(
        self,
        r: redis.Redis,
        cfg: CitysightConfig,
        alerts: AlertStore,
        evidence: EvidenceStore,
        cameras: Any = None,
    ) -> None:
        self.r = r
        self.cfg = cfg
        self.alerts = alerts
        self.evidence = evidence
        self._cameras = cameras

    def _camera_list(self) -> list[CameraConfig]:
        cams = {c.id: c for c in self.cfg.cameras}
        if self._cameras is not None:
            cams.update({c.id: c for c in self._cameras()})
        return list(cams.values())

    def place(self, kind: AlertKind, loc: Location) -> tuple[str, str]:
        """``(camera id, jurisdiction)`` of a report: the nearest camera within
        ``camera_radius_m`` that can watch a rule of ``kind`` (:func:`can_watch`; ``""``
        when none), and the jurisdiction: the area of the hierarchy containing the report's
        position, else that of the nearest camera within that radius (``default`` when none)."""
        rules = [r for r in (self.cfg.rules or default_rules()) if r.enabled and r.kind == kind]
        near = sorted(
            (d, c)
            for c in self._camera_list()
            if (d := distance_m(loc, Location(lat=c.latitude, lon=c.longitude)))
            <= self.cfg.reports.camera_radius_m
        )  # fmt: skip
        # With a jurisdiction hierarchy the report's own position decides (its grid), not
        # the nearest camera's.
        located = self.cfg.tree().locate(loc.lat, loc.lon) if self.cfg.tree() else None
        juris = located or (near[0][1].jurisdiction if near else "default")
        cam = next((c.id for _, c in near if any(can_watch(r, c) for r in rules)), "")
        return cam, juris

    def find_open(self, kind: AlertKind, loc: Location, now: float) -> Alert | None:
        """The nearest open alert of ``kind`` within the attach radius and window."""
        rc = self.cfg.reports
        if rc.attach_radius_m <= 0 or rc.attach_window_s <= 0:
            return None
        found = self.alerts.query(
            kinds={kind.value},
            states={s.value for s in OPEN_STATES},
            since=now - rc.attach_window_s,
            limit=500,
        )
        near = [(distance_m(loc, a.location), a.id, a) for a in found]
        near = [x for x in near if x[0] <= rc.attach_radius_m]
        return min(near)[2] if near else None

    def submit(
        self,
        *,
        reporter: str,
        kind: AlertKind,
        location: Location,
        note: str,
        photos: list[CleanPhoto],
    ) -> ReportResult:
        """Raise an alert from a report, or add the report to a nearby open one.

        The photos are stored first; when the alert cannot be written they are deleted
        again (nothing half-kept).
        """
        now = time.time()
        target = self.find_open(kind, location, now)
        alert_id = target.id if target else "al_" + secrets.token_hex(10)
        photo_ids = [f"r{int(now * 1000):x}-{i}" for i in range(len(photos))]
        refs = []
        try:
            for pid, photo in zip(photo_ids, photos, strict=True):
                key = self.evidence.put_item(alert_id, pid, photo.jpeg)
                refs.append(EvidenceRef(key=key, id=pid, source="report", frame_time=now))
            where = f"report at {location.lat:.6f}, {location.lon:.6f}"
            if target is not None:
                alert = self.alerts.add_event(
                    target.id, actor=reporter, action="report", evidence=refs,
                    note=f"{where}: {note}" if note else where,
                )  # fmt: skip
                created = False
            else:
                alert = self._raise(alert_id, reporter, kind, location, note, refs, now)
                created = True
        except BaseException:
            self.evidence.delete_items(alert_id, photo_ids)
            raise
        ttl = self.cfg.retention.alert_ttl_s
        key = keys.reports_by_reporter_key(reporter)
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(key, {alert.id: now})
        pipe.zremrangebyscore(key, "-inf", now - ttl)
        pipe.expire(key, ttl)
        pipe.execute()
        return ReportResult(alert=alert, created=created, photo_ids=photo_ids)

    def _raise(
        self,
        alert_id: str,
        reporter: str,
        kind: AlertKind,
        location: Location,
        note: str,
        refs: list[EvidenceRef],
        now: float,
    ) -> Alert:
        camera_id, juris = self.place(kind, location)
        dept = self.cfg.route(kind, juris) or "unrouted"
        summary = f"field report: {kind.value.replace('_', ' ')}"
        if note:
            summary += f": {note[:120]}"
        alert = Alert(
            id=alert_id, kind=kind, severity=_SEVERITY.get(kind, Severity.MEDIUM),
            camera_id=camera_id, camera_ids=[camera_id] if camera_id else [],
            location=location, jurisdiction=juris, department=dept, subject="report",
            started_at=datetime.fromtimestamp(now, UTC), summary=summary, source=REPORT_SOURCE,
            reporter=reporter, evidence=refs, detected_at=now, raised_at=now,
        )  # fmt: skip
        saved = self.alerts.save_new([alert])
        return saved[0] if saved else alert

    def mine(self, reporter: str, limit: int = 50) -> list[dict[str, Any]]:
        """The principal's reports, newest first: the state of each alert they raised or
        joined (what a reporter may know of it, nothing more)."""
        rows = cast(
            "list[tuple[bytes | str, float]]",
            self.r.zrevrange(keys.reports_by_reporter_key(reporter), 0, limit - 1, withscores=True),
        )
        out = []
        for member, t in rows:
            alert = self.alerts.get(keys.text(member) or "")
            if alert is None:
                continue
            out.append(
                {
                    "alert_id": alert.id,
                    "reported_at": t,
                    "kind": alert.kind.value,
                    "state": alert.state.value,
                    "outcome": alert.outcome,
                    "raised_by_me": alert.reporter == reporter,
                    "department": alert.department,
                    "location": alert.location.model_dump(),
                    "updated_at": alert.updated_at.isoformat(),
                }
            )
        return out
