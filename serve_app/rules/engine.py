"""The rules engine: batches of FrameResults in, alerts and plate reads out.

Work is vectorised per camera over the whole batch (class/score masks, point-in-polygon,
per-frame hit counts with ``bincount``); Python loops run only over frames of cameras that
have live rule state and over the (few) detections that pass a rule's mask. The engine
does no I/O: the consumer persists what it returns.

State (persistence windows, dwell first-seen times, last track positions, cooldowns)
lives in memory. A restarted consumer rebuilds it by replaying the recent stream (see
``serve_app/consumer.py``) and reloads cooldowns from Redis. Cross-camera incidents are
not engine state: the consumer assigns them globally in Redis
(``serve_app/rules/incidents.py``). Schedules are evaluated in ``site.timezone``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

import numpy as np
import numpy.typing as npt

from citysight.config import CameraConfig, CitysightConfig, RuleConfig, RuleType
from citysight.contracts import (
    Alert,
    AlertKind,
    CameraState,
    CameraStatus,
    EvidenceRef,
    FrameResult,
    Location,
    ObjectClass,
    Severity,
    make_alert_id,
)
from citysight.keys import evidence_key
from citysight.plates import normalise_plate
from citysight.rulesets import default_rules
from serve_app.rules.geometry import anchors, crossing, points_in_polygon
from serve_app.rules.hotlist import Hotlist
from serve_app.rules.persistence import Persistence
from serve_app.rules.schedule import in_schedule

logger = logging.getLogger(__name__)

OFFLINE_RULE_ID = "camera_offline"
OFFLINE_COOLDOWN_S = 300.0
SNAPSHOT_MAX_AGE_S = 3.0
"""Oldest snapshot (relative to the triggering frame) that may serve as an alert's evidence."""
_FACE = int(ObjectClass.FACE)
_CLASS_IDS = {c.name.lower(): int(c) for c in ObjectClass}


def cooldown_key(camera_id: str, rule_id: str, subject: str) -> str:
    """Key of one (camera, rule, subject) cooldown."""
    return f"{camera_id}\x1f{rule_id}\x1f{subject}"


@dataclass(slots=True)
class EngineOutput:
    """What one evaluation produced.

    Attributes:
        alerts: New alerts (deterministic ids; the store deduplicates redeliveries).
        plate_reads: ``(plate, camera_id, t, score)`` of every plate read.
        snapshots: alert id → snapshot key of the triggering frame.
        cooldowns: cooldown key → alert time, for alerts raised here (persist these).
        failed: Indices (into the input) of frames whose evaluation raised.
        frames: Frames evaluated.
        sightings: ``(camera, rule, zone)`` → latest sighting of the rule's condition in
            this batch, whether or not it raised an alert (cooldowns and persistence only
            gate alerts): what the camera re-check looks for. ``zone`` is the zone id of a
            presence/count rule, ``*`` for other rule types.
        seen: camera → latest frame time evaluated (the re-check's proof that a camera was
            watched up to its deadline).
    """

    alerts: list[Alert] = field(default_factory=list)
    plate_reads: list[tuple[str, str, float, float]] = field(default_factory=list)
    snapshots: dict[str, str] = field(default_factory=dict)
    cooldowns: dict[str, float] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    frames: int = 0
    sightings: dict[tuple[str, str, str], Sighting] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Sighting:
    """The condition of a rule seen on a camera at ``t``, with the snapshot to show."""

    t: float
    snapshot_key: str = ""
    evidence: EvidenceRef | None = None


def _presence_summary(rule: RuleConfig, subject: str, count: int) -> str:
    """Readable one-line summary of a presence or count alert."""
    what = {"face": "face", "fire": "fire", "smoke": "smoke", "vending": "vending objects"}.get(
        rule.kind.value, rule.kind.value
    )
    where = "in view" if subject == "*" else f"in zone {subject}"
    n = f"{count} " if rule.type == RuleType.COUNT else ""
    return f"{n}{what} detected {where} (rule {rule.id})"


@dataclass(slots=True)
class _Camera:
    id: str
    location: Location
    jurisdiction: str
    zones: list[tuple[str, str, npt.NDArray[np.float64]]]  # (id, type, relative polygon)
    lines: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], str]]


@dataclass(slots=True)
class _Batch:
    """Detections of one camera's frames in a batch, concatenated."""

    frames: list[FrameResult]
    times: list[float]
    fidx: npt.NDArray[np.intp]
    offsets: npt.NDArray[np.intp]
    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    cls: npt.NDArray[np.int32]
    trk: npt.NDArray[np.int64]
    wh: npt.NDArray[np.float64]
    _anchors: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)

    def anchors(self, kind: str) -> npt.NDArray[np.float64]:
        if kind not in self._anchors:
            pts = anchors(self.boxes, kind, 0, 0)
            self._anchors[kind] = pts / self.wh
        return self._anchors[kind]


@dataclass(slots=True, frozen=True)
class _Trigger:
    """What fired: a rule on a camera for a subject, from ``window_start``, seen in
    ``frame`` as the detections ``sel`` (indices into the frame's boxes)."""

    cam: _Camera
    rule: RuleConfig
    subject: str
    window_start: float
    frame: FrameResult
    sel: npt.NDArray[np.intp]


class RulesEngine:
    """Evaluates the configured rules over batches of frame results.

    Args:
        cfg: Configuration (cameras, rules, hotlist, routing). No rules means
            :func:`citysight.rulesets.default_rules`.
        tz: Time zone of schedules, overriding ``cfg.site.timezone`` (which, when unset,
            means the machine's local zone).
        track_gap_s: A track unseen for longer starts a new dwell / crossing history.

    Alerts come out with ``camera_ids = [camera_id]`` and no ``incident_id``: the consumer
    merges them into incidents (:class:`serve_app.rules.incidents.IncidentIndex`).
    """

    def __init__(
        self,
        cfg: CitysightConfig,
        *,
        tz: tzinfo | None = None,
        track_gap_s: float = 10.0,
    ) -> None:
        self._tz_override = tz
        self.tz: tzinfo | None = tz
        self.track_gap_s = track_gap_s
        self._persist: dict[str, dict[tuple[str, str], Persistence]] = {}  # camera → state
        self._dwell: dict[tuple[str, str, int], list[float]] = {}
        self._last_pos: dict[tuple[str, str, int], tuple[npt.NDArray[np.float64], float]] = {}
        self._cooldown: dict[str, float] = {}
        self._offline: set[str] = set()
        self._latest_t = 0.0
        self._last_snap: dict[str, FrameResult] = {}  # camera → latest frame with a snapshot
        self._evals = 0
        self.cfg = cfg
        self.rules: list[RuleConfig] = []
        self._extra_cameras: dict[str, CameraConfig] = {}
        self.reconfigure(cfg)

    # -- configuration ---------------------------------------------------------------------

    def reconfigure(self, cfg: CitysightConfig) -> None:
        """Swap the configuration; state of rules whose definition is unchanged is kept."""
        old = {r.id: r for r in self.rules}
        self.cfg = cfg
        self.rules = [r for r in (cfg.rules or default_rules()) if r.enabled]
        keep = {r.id for r in self.rules if r.id in old and old[r.id] == r}
        for d in (self._dwell, self._last_pos):
            for k in [k for k in d if k[1] not in keep]:
                del d[k]
        for states in self._persist.values():
            for sk in [sk for sk in states if sk[0] not in keep]:
                del states[sk]
        self.tz = self._tz_override if self._tz_override is not None else cfg.site.zone()
        if self.tz is None and any(r.schedule for r in self.rules):
            logger.warning(
                "rules have schedules but site.timezone is not set: they are evaluated in "
                "this host's zone (%s); set site.timezone to the city's IANA zone",
                datetime.now().astimezone().tzname(),
            )
        self.hotlist = Hotlist(cfg.plate_hotlist)
        self._classes = {r.id: _class_lut(r.classes) for r in self.rules}
        self._cams: dict[str, _Camera] = {}
        self._cam_rules: dict[str, list[RuleConfig]] = {}
        logger.info(
            "rules configured: %d rule(s), %d kept their state, hotlist %d, schedules in %s",
            len(self.rules),
            len(keep),
            len(self.hotlist),
            self.tz or "the host's zone",
        )

    def set_cameras(self, cameras: list[CameraConfig]) -> None:
        """Cameras from the runtime registry (override config cameras with the same id)."""
        self._extra_cameras = {c.id: c for c in cameras}
        self._cams.clear()
        self._cam_rules.clear()

    def restore_cooldowns(self, cooldowns: dict[str, float]) -> None:
        """Load persisted cooldowns (after a restart)."""
        for k, t in cooldowns.items():
            self._cooldown[k] = max(t, self._cooldown.get(k, t))

    def _camera(self, cid: str) -> _Camera:
        cam = self._cams.get(cid)
        if cam is None:
            cc = self._extra_cameras.get(cid) or self.cfg.camera(cid)
            if cc is None:
                cam = _Camera(cid, Location(lat=0.0, lon=0.0), "default", [], {})
            else:
                cam = _Camera(
                    cid, Location(lat=cc.latitude, lon=cc.longitude), self.cfg.place(cc),
                    [(z.id, z.type.value, np.asarray(z.polygon, np.float64)) for z in cc.zones],
                    {ln.id: (np.asarray(ln.start, np.float64), np.asarray(ln.end, np.float64),
                             ln.direction) for ln in cc.lines},
                )  # fmt: skip
            self._cams[cid] = cam
        return cam

    def camera_place(self, cid: str) -> tuple[Location, str]:
        """Location and jurisdiction of a camera (``0, 0`` / ``default`` when unknown)."""
        cam = self._camera(cid)
        return cam.location, cam.jurisdiction

    def _rules_for(self, cid: str) -> list[RuleConfig]:
        rules = self._cam_rules.get(cid)
        if rules is None:
            rules = self._cam_rules[cid] = [r for r in self.rules if r.applies_to(cid)]
        return rules

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, frames: list[FrameResult]) -> EngineOutput:
        """Evaluate a batch (frames of one camera must come in time order)."""
        out = EngineOutput(frames=len(frames))
        live = self._persist
        # A camera whose frames are all empty and that has no live persistence state has
        # nothing to evaluate: skipping it keeps idle cameras cheap. Otherwise all of its
        # frames count (quiet frames switch conditions off).
        busy = {f.camera_id for f in frames if len(f.scores)}
        busy.update(c for c in {f.camera_id for f in frames} - busy if live.get(c))
        groups: dict[str, list[int]] = {}
        latest = self._latest_t
        seen = out.seen
        for i, f in enumerate(frames):
            if f.frame_time > latest:
                latest = f.frame_time
            if f.frame_time > seen.get(f.camera_id, 0.0):
                seen[f.camera_id] = f.frame_time
            if f.camera_id in busy:
                groups.setdefault(f.camera_id, []).append(i)
            if f.snapshot_key and len(f.scores):
                self._last_snap[f.camera_id] = f
        self._latest_t = latest
        raw: list[Alert] = []
        for cid, idx in groups.items():
            try:
                self._eval_camera(cid, [frames[i] for i in idx], out, raw)
            except Exception:
                logger.exception(
                    "rules failed on a batch of camera %s; retrying frame by frame", cid
                )
                for i in idx:
                    try:
                        self._eval_camera(cid, [frames[i]], out, raw)
                    except Exception:
                        logger.exception(
                            "rules failed on frame %s of camera %s", frames[i].frame_no, cid
                        )
                        out.failed.append(i)
        out.alerts = raw
        self._evals += 1
        if self._evals % 500 == 0:
            self._sweep()
        return out

    def _eval_camera(
        self, cid: str, frames: list[FrameResult], out: EngineOutput, raw: list[Alert]
    ) -> None:
        times = [f.frame_time for f in frames]
        rules = self._rules_for(cid)
        sizes = np.fromiter((len(f) for f in frames), np.intp, len(frames))
        if not sizes.any():
            if self._persist.get(cid):  # quiet frames switch live conditions off
                batch = _empty_batch(frames, times)
                for rule in rules:
                    if rule.type in (RuleType.PRESENCE, RuleType.COUNT):
                        self._presence(self._camera(cid), rule, batch, out, raw)
            return
        cam = self._camera(cid)
        nz = [f for f in frames if len(f)]
        wh = np.repeat(
            np.array([[f.width or 1, f.height or 1] for f in frames], np.float64), sizes, axis=0
        )
        batch = _Batch(
            frames=frames, times=times, fidx=np.repeat(np.arange(len(frames)), sizes),
            offsets=np.cumsum(sizes) - sizes,
            boxes=np.concatenate([f.boxes for f in nz]),
            scores=np.concatenate([f.scores for f in nz]),
            cls=np.concatenate([f.class_ids for f in nz]),
            trk=np.concatenate([f.track_ids for f in nz]), wh=wh,
        )  # fmt: skip
        for f in nz:
            texts = f.extra.get("plate_text")
            if texts:
                pscores = f.extra.get("plate_score") or f.scores.tolist()
                for txt, s in zip(texts, pscores, strict=False):
                    p = normalise_plate(txt) if txt else ""
                    if p:
                        out.plate_reads.append((p, cid, f.frame_time, float(s or 0.0)))
        for rule in rules:
            EVALUATORS[rule.type](self, cam, rule, batch, out, raw)

    def _base_mask(self, rule: RuleConfig, b: _Batch) -> npt.NDArray[np.bool_]:
        m = b.scores >= rule.min_score
        lut = self._classes[rule.id]
        if lut is not None:
            m &= lut[np.clip(b.cls, 0, len(lut) - 1)]
        return m

    def _zones(self, cam: _Camera, rule: RuleConfig) -> list[tuple[str, Any]]:
        if not rule.zone_types:
            return [("*", None)]
        types = {z.value for z in rule.zone_types}
        return [(zid, poly) for zid, ztype, poly in cam.zones if ztype in types]

    def _presence(
        self, cam: _Camera, rule: RuleConfig, b: _Batch, out: EngineOutput, raw: list[Alert]
    ) -> None:
        nf = len(b.frames)
        base = self._base_mask(rule, b) if len(b.scores) else None
        need = rule.count_min if rule.type is RuleType.COUNT else 1
        for subject, poly in self._zones(cam, rule):
            key = (rule.id, subject)
            states = self._persist.setdefault(cam.id, {})
            st = states.get(key)
            m = None
            if base is not None and base.any():
                m = (
                    base & points_in_polygon(b.anchors(rule.anchor), poly)
                    if poly is not None
                    else base
                )
                hits = np.bincount(b.fidx[m], minlength=nf) >= need
            else:
                hits = np.zeros(nf, bool)
            if st is None:
                if not hits.any():
                    continue
                st = states[key] = Persistence()
            for i in range(nf):
                st.update(bool(hits[i]), b.times[i], rule.persistence)
                if st.on and hits[i]:
                    self._sighting(cam, rule, subject, b.frames[i], _frame_sel(b, i, m), out)
                if st.on and not st.alerted:
                    t = b.times[i]
                    if not in_schedule(rule.schedule, t, self.tz):
                        continue
                    st.alerted = True  # emitted, or suppressed by the cooldown
                    sel = _frame_sel(b, i, m)
                    self._emit(
                        _Trigger(cam, rule, subject, st.window_start, b.frames[i], sel),
                        out,
                        raw,
                        summary=_presence_summary(rule, subject, len(sel)),
                    )
            if st.idle:
                del states[key]

    def _in_zones(self, cam: _Camera, rule: RuleConfig, b: _Batch) -> npt.NDArray[np.bool_]:
        zones = self._zones(cam, rule)
        if zones == [("*", None)]:
            return np.ones(len(b.scores), bool)
        m = np.zeros(len(b.scores), bool)
        for _, poly in zones:
            m |= points_in_polygon(b.anchors(rule.anchor), poly)
        return m

    def _dwell_rule(
        self, cam: _Camera, rule: RuleConfig, b: _Batch, out: EngineOutput, raw: list[Alert]
    ) -> None:
        m = self._base_mask(rule, b) & (b.trk >= 0)
        if not m.any():
            return
        m &= self._in_zones(cam, rule, b)
        for j in np.flatnonzero(m):
            i, tid = int(b.fidx[j]), int(b.trk[j])
            t = b.times[i]
            key = (cam.id, rule.id, tid)
            d = self._dwell.get(key)
            if d is None or t - d[1] > self.track_gap_s:
                d = self._dwell[key] = [t, t, 0.0]
            d[1] = max(d[1], t)
            if t - d[0] >= rule.dwell_s:
                self._sighting(cam, rule, "*", b.frames[i], np.array([j - b.offsets[i]]), out)
            if not d[2] and t - d[0] >= rule.dwell_s and in_schedule(rule.schedule, t, self.tz):
                d[2] = 1.0
                self._emit(
                    _Trigger(
                        cam, rule, f"track:{tid}", d[0], b.frames[i], np.array([j - b.offsets[i]])
                    ),
                    out,
                    raw,
                    summary=f"{rule.kind.value}: track {tid} stayed {t - d[0]:.0f} s",
                )

    def _line_rule(
        self, cam: _Camera, rule: RuleConfig, b: _Batch, out: EngineOutput, raw: list[Alert]
    ) -> None:
        m = self._base_mask(rule, b) & (b.trk >= 0)
        if not m.any():
            return
        lines = [
            (lid, cam.lines[lid]) for lid in (rule.line_ids or list(cam.lines)) if lid in cam.lines
        ]
        pts = b.anchors(rule.anchor)
        for j in np.flatnonzero(m):
            i, tid = int(b.fidx[j]), int(b.trk[j])
            t = b.times[i]
            key = (cam.id, rule.id, tid)
            prev = self._last_pos.get(key)
            self._last_pos[key] = (pts[j], t)
            if prev is None or t - prev[1] > self.track_gap_s:
                continue
            for lid, (a, c, direction) in lines:
                d = crossing(prev[0], pts[j], a, c)
                if (
                    d == 0
                    or (direction == "left_to_right" and d < 0)
                    or (direction == "right_to_left" and d > 0)
                ):
                    continue
                if in_schedule(rule.schedule, t, self.tz):
                    way = "left to right" if d > 0 else "right to left"
                    self._emit(
                        _Trigger(
                            cam,
                            rule,
                            f"{lid}:track:{tid}",
                            t,
                            b.frames[i],
                            np.array([j - b.offsets[i]]),
                        ),
                        out,
                        raw,
                        summary=f"track {tid} crossed {lid} {way}",
                    )

    def _hotlist_rule(
        self, cam: _Camera, rule: RuleConfig, b: _Batch, out: EngineOutput, raw: list[Alert]
    ) -> None:
        if not len(self.hotlist):
            return
        m = self._base_mask(rule, b)
        for i, f in enumerate(b.frames):
            texts = f.extra.get("plate_text")
            if not texts:
                continue
            for k, txt in enumerate(texts):
                if not txt or not m[b.offsets[i] + k]:
                    continue
                hit = self.hotlist.match(str(txt))
                if hit is None or not in_schedule(rule.schedule, f.frame_time, self.tz):
                    continue
                how = "exact" if hit.exact else "tolerant"
                self._emit(
                    _Trigger(
                        cam, rule, normalise_plate(hit.entry.plate), f.frame_time, f, np.array([k])
                    ),
                    out,
                    raw,
                    severity=hit.entry.severity,
                    plate_text=hit.read,
                    summary=f"hotlist plate {hit.entry.plate} read as {hit.read} "
                    f"({how}): {hit.entry.reason}".rstrip(": "),
                )

    # -- alerts ----------------------------------------------------------------------------

    def _emit(
        self,
        trig: _Trigger,
        out: EngineOutput,
        raw: list[Alert],
        *,
        summary: str,
        severity: Severity | None = None,
        plate_text: str | None = None,
    ) -> None:
        cam, rule, subject, window_start, frame, sel = (
            trig.cam, trig.rule, trig.subject, trig.window_start, trig.frame, trig.sel
        )  # fmt: skip
        t = frame.frame_time
        ck = cooldown_key(cam.id, rule.id, subject)
        last = self._cooldown.get(ck)
        if last is not None and abs(t - last) < rule.cooldown_s:
            return
        self._cooldown[ck] = t
        out.cooldowns[ck] = t
        alert_id = make_alert_id(cam.id, rule.id, subject, window_start)
        evidence = []
        found = self._evidence(cam, frame, sel, evidence_key(alert_id))
        if found is not None:
            evidence.append(found[0])
            out.snapshots[alert_id] = found[1]
        raw.append(self._alert(
            alert_id, rule.kind, severity or rule.severity, cam, rule.id, subject, window_start,
            t, score=float(frame.scores[sel].max()) if len(sel) else 0.0, summary=summary,
            plate_text=plate_text, evidence=evidence,
        ))  # fmt: skip

    def _evidence(
        self, cam: _Camera, frame: FrameResult, sel: npt.NDArray[np.intp], key: str
    ) -> tuple[EvidenceRef, str] | None:
        """The evidence of a detection: a reference (under ``key``) and the snapshot to copy.

        Stream workers store at most about one snapshot per second per camera: when the
        frame has none, the camera's latest snapshot within SNAPSHOT_MAX_AGE_S is the
        evidence, with that frame's own boxes of the same classes.
        """
        t = frame.frame_time
        snap = frame if frame.snapshot_key else self._last_snap.get(cam.id)
        if snap is None or abs(snap.frame_time - t) > SNAPSHOT_MAX_AGE_S:
            return None
        faces = np.flatnonzero(snap.class_ids == _FACE)
        if snap is frame:
            shown = np.asarray(sel, np.intp)
        else:
            shown = np.flatnonzero(np.isin(snap.class_ids, frame.class_ids[sel]))
        ev_idx = np.unique(np.concatenate([shown, faces]))
        ref = EvidenceRef(
            key=key, frame_time=snap.frame_time, boxes=snap.boxes[ev_idx].round(1).tolist(),
            class_ids=snap.class_ids[ev_idx].tolist(),
        )  # fmt: skip
        return ref, snap.snapshot_key

    def _sighting(
        self,
        cam: _Camera,
        rule: RuleConfig,
        zone: str,
        frame: FrameResult,
        sel: npt.NDArray[np.intp],
        out: EngineOutput,
    ) -> None:
        """Remember the latest sighting of a rule's condition (for the camera re-check)."""
        if rule.recheck_s <= 0:
            return
        key = (cam.id, rule.id, zone)
        found = self._evidence(cam, frame, sel, "")
        prev = out.sightings.get(key)
        if prev is not None and prev.evidence is not None and found is None:
            return  # an earlier frame of this batch showed it with a snapshot: keep that
        out.sightings[key] = Sighting(
            frame.frame_time, found[1] if found else "", found[0] if found else None
        )

    def _alert(
        self,
        alert_id: str,
        kind: AlertKind,
        severity: Severity,
        cam: _Camera,
        rule_id: str,
        subject: str,
        window_start: float,
        t: float,
        **kw: Any,
    ) -> Alert:
        dept = self.cfg.route(kind, cam.jurisdiction)
        if dept is None:
            logger.warning(
                "no route for %s in %s; alert %s goes to 'unrouted'",
                kind.value,
                cam.jurisdiction,
                alert_id,
            )
            dept = "unrouted"
        return Alert(
            id=alert_id, kind=kind, severity=severity, camera_id=cam.id, camera_ids=[cam.id],
            location=cam.location, jurisdiction=cam.jurisdiction,
            jurisdiction_path=self.cfg.jurisdiction_path(cam.jurisdiction), department=dept,
            rule_id=rule_id, subject=subject,
            started_at=datetime.fromtimestamp(window_start, UTC), detected_at=t, **kw,
        )  # fmt: skip

    def camera_status(self, statuses: list[CameraStatus]) -> EngineOutput:
        """``camera_offline`` alerts for cameras that went offline (once per outage)."""
        out = EngineOutput()
        for st in statuses:
            if st.state is not CameraState.OFFLINE:
                if st.state is CameraState.RUNNING:
                    self._offline.discard(st.camera_id)
                continue
            if st.camera_id in self._offline:
                continue
            self._offline.add(st.camera_id)
            ck = cooldown_key(st.camera_id, OFFLINE_RULE_ID, "offline")
            last = self._cooldown.get(ck)
            if last is not None and abs(st.at - last) < OFFLINE_COOLDOWN_S:
                continue
            self._cooldown[ck] = st.at
            out.cooldowns[ck] = st.at
            cam = self._camera(st.camera_id)
            out.alerts.append(self._alert(
                make_alert_id(st.camera_id, OFFLINE_RULE_ID, "offline", st.at),
                AlertKind.CAMERA_OFFLINE, Severity.MEDIUM, cam, OFFLINE_RULE_ID, "offline",
                st.at, st.at, summary=f"camera offline: {st.reason}".rstrip(": "),
            ))  # fmt: skip
        return out

    def _sweep(self) -> None:
        horizon = self._latest_t - 4 * self.track_gap_s
        for k in [k for k, d in self._dwell.items() if d[1] < horizon]:
            del self._dwell[k]
        for k in [k for k, p in self._last_pos.items() if p[1] < horizon]:
            del self._last_pos[k]
        longest = max((r.cooldown_s for r in self.rules), default=0.0)
        old = self._latest_t - max(longest, OFFLINE_COOLDOWN_S)
        for ck in [ck for ck, t in self._cooldown.items() if t < old]:
            del self._cooldown[ck]

    def state_size(self) -> dict[str, int]:
        """Sizes of the in-memory state (for health details)."""
        return {
            "persistence": len(self._persist),
            "dwell": len(self._dwell),
            "tracks": len(self._last_pos),
            "cooldowns": len(self._cooldown),
        }


def _class_lut(classes: list[str]) -> npt.NDArray[np.bool_] | None:
    """Boolean lookup table class id → selected (``None``: every class), last slot False."""
    if not classes:
        return None
    lut = np.zeros(max(_CLASS_IDS.values()) + 2, bool)
    lut[[_CLASS_IDS[c] for c in classes]] = True
    return lut


def _empty_batch(frames: list[FrameResult], times: list[float]) -> _Batch:
    z = np.zeros(0, np.intp)
    return _Batch(
        frames,
        times,
        z,
        np.zeros(len(frames), np.intp),
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.float32),
        np.zeros(0, np.int32),
        np.zeros(0, np.int64),
        np.zeros((0, 2)),
    )


def _frame_sel(b: _Batch, i: int, m: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.intp]:
    if m is None:
        return np.zeros(0, np.intp)
    sel: npt.NDArray[np.intp] = np.flatnonzero(m & (b.fidx == i)) - b.offsets[i]
    return sel


Evaluator = Callable[[RulesEngine, _Camera, RuleConfig, _Batch, EngineOutput, list[Alert]], None]

#: How each rule type is evaluated on a camera's batch of frames: one entry per
#: :class:`citysight.config.RuleType` (a type without one fails at import).
EVALUATORS: dict[RuleType, Evaluator] = {
    RuleType.PRESENCE: RulesEngine._presence,
    RuleType.COUNT: RulesEngine._presence,
    RuleType.DWELL: RulesEngine._dwell_rule,
    RuleType.LINE_CROSSING: RulesEngine._line_rule,
    RuleType.PLATE_HOTLIST: RulesEngine._hotlist_rule,
}
if set(EVALUATORS) != set(RuleType):  # pragma: no cover - caught by any import
    raise ImportError(f"rule types without an evaluator: {set(RuleType) - set(EVALUATORS)}")
