"""``analytics_down``: a camera whose reader runs but whose frames are not analysed.

The stream worker decides per camera whether its frames are analysed (``CameraStatus.analysed``
and ``analysis_stopped_at``, see ``streams/worker.py``) and publishes each change on
``citysight:camera-status``. From those messages the rules consumer:

* raises, for a running camera reported ``analysed=False``, one ``analytics_down`` alert
  (severity high) per department concerned: the department routed for ``analytics_down``
  (the duty supervisors in the demo; without a route, the one routed for ``camera_offline``)
  and every department that receives the camera's detections (its detectors' alert kinds,
  routed in its jurisdiction), so each sees, and dispatches, the outage of its own cameras;
* resolves them (an event by ``system``, outcome ``recovered``) when the camera is reported
  ``analysed=True`` again.

Durability without duplicates across consumers and redeliveries: alert ids are deterministic
(camera, department, the time analysis stopped), so a status handled twice saves nothing
twice; the open alerts of each camera are recorded in the hash ``citysight:analytics-down``
(camera id → ``{"ids": [...], "since": t}``), which stops a second alert for an outage already
alerted (a worker restarted mid-outage reports a new start time) and lets :meth:`reconcile`
resolve alerts whose resume message raced the raise or was lost, from
``citysight:camera-health`` (the workers' truth, refreshed every 2 s), and alerts of cameras
deleted or disabled meanwhile.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from citysight import keys
from citysight.config import CameraConfig, CitysightConfig, Detector
from citysight.contracts import (
    Alert,
    AlertKind,
    CameraState,
    CameraStatus,
    Location,
    Severity,
    make_alert_id,
)
from serve_app.store.alerts import AlertStore
from serve_app.store.lifecycle import OPEN_STATES

logger = logging.getLogger(__name__)

RULE_ID = "analytics_down"
CAMERA_FRESH_S = 30.0
"""Camera health older than this (its worker died) cannot prove that analysis resumed."""
DETECTOR_KINDS: dict[Detector, tuple[AlertKind, ...]] = {
    Detector.FACE: (AlertKind.FACE,),
    Detector.PLATE: (AlertKind.PLATE,),
    Detector.FIRE_SMOKE: (AlertKind.FIRE, AlertKind.SMOKE),
    Detector.VENDING: (AlertKind.VENDING,),
}
"""Alert kinds each detector feeds: their departments depend on the camera's analysis."""


def departments_for(
    cfg: CitysightConfig, camera: CameraConfig | None, jurisdiction: str
) -> list[str]:
    """Departments of a camera's ``analytics_down`` alerts: the routed one first, then those
    that receive its detections."""
    first = (
        cfg.route(AlertKind.ANALYTICS_DOWN, jurisdiction)
        or cfg.route(AlertKind.CAMERA_OFFLINE, jurisdiction)
        or "unrouted"
    )
    affected: list[str] = []
    for det in camera.detectors if camera is not None else []:
        for kind in DETECTOR_KINDS.get(det, ()):
            dept = cfg.route(kind, jurisdiction)
            if dept and dept != first and dept not in affected:
                affected.append(dept)
    return [first, *sorted(affected)]


class AnalyticsWatch:
    """Raises and resolves ``analytics_down`` alerts (see the module docstring).

    Args:
        r: Redis client of the consumer.
        alerts: The alert store.
        cfg: Configuration (routing, configured cameras).
        camera: ``camera id → CameraConfig | None`` (the runtime registry first).
        place: ``camera id → (location, jurisdiction)`` (the rules engine's).
    """

    def __init__(
        self,
        r: redis.Redis,
        alerts: AlertStore,
        cfg: CitysightConfig,
        camera: Callable[[str], CameraConfig | None],
        place: Callable[[str], tuple[Location, str]],
    ) -> None:
        self.r = r
        self.alerts = alerts
        self.cfg = cfg
        self.camera = camera
        self.place = place
        self.raised = 0
        self.resolved = 0

    # -- from camera status messages -----------------------------------------------------------

    def alerts_for(self, statuses: list[CameraStatus]) -> list[Alert]:
        """New ``analytics_down`` alerts for cameras reported running but not analysed.

        A camera that already has open ``analytics_down`` alerts gets none (one outage, one
        set of alerts).
        """
        down: dict[str, CameraStatus] = {}
        for st in statuses:
            if st.analysed is False and st.state is CameraState.RUNNING:
                down[st.camera_id] = st
            elif st.analysed is True:
                down.pop(st.camera_id, None)
        if not down:
            return []
        ids = sorted(down)
        open_now = dict(zip(ids, self.r.hmget(keys.ANALYTICS_DOWN, ids), strict=True))
        out: list[Alert] = []
        for cid in ids:
            if open_now[cid] is not None and self._still_open(cid, open_now[cid]):
                continue
            st = down[cid]
            since = st.analysis_stopped_at or st.at
            loc, jurisdiction = self.place(cid)
            for dept in departments_for(self.cfg, self.camera(cid), jurisdiction):
                out.append(
                    Alert(
                        id=make_alert_id(cid, RULE_ID, dept, since),
                        kind=AlertKind.ANALYTICS_DOWN,
                        severity=Severity.HIGH,
                        camera_id=cid,
                        camera_ids=[cid],
                        location=loc,
                        jurisdiction=jurisdiction,
                        department=dept,
                        rule_id=RULE_ID,
                        subject=dept,
                        started_at=datetime.fromtimestamp(since, UTC),
                        detected_at=st.at,
                        summary=(
                            f"analytics down: camera {cid} decodes frames but none was "
                            f"analysed for {max(0.0, st.at - since):.0f} s"
                        ),
                    )
                )
        return out

    def saved(self, alerts: list[Alert]) -> None:
        """Record the open alerts of each camera (after they were saved; idempotent)."""
        by: dict[str, list[Alert]] = {}
        for a in alerts:
            if a.kind is AlertKind.ANALYTICS_DOWN:
                by.setdefault(a.camera_id, []).append(a)
        if not by:
            return
        self.r.hset(
            keys.ANALYTICS_DOWN,
            mapping={
                cid: json.dumps({"ids": sorted(a.id for a in al), "since": _ts(al[0])})
                for cid, al in by.items()
            },
        )
        self.raised += sum(len(v) for v in by.values())
        for cid, al in by.items():
            logger.warning(
                "camera %s: analytics down; alerted %s",
                cid,
                ", ".join(a.department for a in al),
            )

    def resumed(self, statuses: list[CameraStatus]) -> list[Alert]:
        """Resolve the open alerts of cameras whose last status says they are analysed."""
        last: dict[str, bool | None] = {}
        for st in statuses:
            if st.analysed is not None:
                last[st.camera_id] = st.analysed
        cams = [cid for cid, ok in last.items() if ok]
        return self._resolve(cams, "frames are analysed again") if cams else []

    # -- upkeep -------------------------------------------------------------------------------

    def reconcile(self, now: float | None = None) -> list[Alert]:
        """Resolve alerts whose camera is analysed again, deleted or disabled (see the doc)."""
        now = time.time() if now is None else now
        rows = {keys.text(k) or "": v for k, v in self.r.hgetall(keys.ANALYTICS_DOWN).items()}
        if not rows:
            return []
        cams = sorted(rows)
        health = self.r.hmget(keys.CAMERA_HEALTH, cams)
        back: list[str] = []
        gone: list[str] = []
        for cid, h in zip(cams, health, strict=True):
            cam = self.camera(cid)
            if cam is None or not cam.enabled:
                gone.append(cid)
                continue
            st = _loads(h)
            fresh = now - float(st.get("at") or 0) <= CAMERA_FRESH_S
            if fresh and st.get("analysed") is True:
                back.append(cid)
        out = self._resolve(back, "frames are analysed again") if back else []
        if gone:
            out += self._resolve(gone, "camera removed or disabled")
        return out

    # -- internals ----------------------------------------------------------------------------

    def _still_open(self, cid: str, raw: Any) -> bool:
        ids = _loads(raw).get("ids") or []
        alerts = [self.alerts.get(i) for i in ids]
        if any(a is not None and a.state in OPEN_STATES for a in alerts):
            return True
        self.r.hdel(
            keys.ANALYTICS_DOWN, cid
        )  # ended by a person meanwhile: a new outage alerts again
        return False

    def _resolve(self, cams: list[str], note: str) -> list[Alert]:
        rows = self.r.hmget(keys.ANALYTICS_DOWN, cams)
        done: list[Alert] = []
        ended: list[str] = []
        for cid, raw in zip(cams, rows, strict=True):
            if raw is None:
                continue
            for alert_id in _loads(raw).get("ids") or []:
                a = self.alerts.resolve_system_alert(alert_id, note=note)
                if a is not None:
                    done.append(a)
            ended.append(cid)
        if ended:
            self.r.hdel(keys.ANALYTICS_DOWN, *ended)
        if done:
            self.resolved += len(done)
            logger.info("analytics_down resolved for %s: %s", ", ".join(ended), note)
        return done


def _ts(a: Alert) -> float:
    dt = a.started_at
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _loads(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        out = json.loads(raw)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}
