"""Camera re-check of resolved alerts: reopen when the condition returns, else verify.

When a person resolves an alert, the alert store adds its id to
``citysight:recheck:watches`` in the same transaction (durable: a rules consumer that is
down or restarting finds it afterwards). The rules consumer that owns the alert's camera
then watches the camera for the rule's ``recheck_s``:

* the rule's condition seen again on that camera (and zone, for presence/count rules) after
  the resolution → the alert is reopened (``raised``) by ``camera-check`` with an event
  ``reopened`` carrying the new sighting's snapshot as evidence;
* the camera analysed up to the deadline without seeing it → an event ``verified`` (and the
  alert closes when the rule says ``recheck_close``);
* the camera sent no analysed frames by the deadline plus a grace period → an event
  ``recheck_failed`` (never a ``verified`` for a camera that did not look).

A camera alert is re-checked by its own rule; a field report by the rule of its kind on the
report's camera (the nearest one, :mod:`serve_app.store.reports`). A person moving the alert
meanwhile (reopened, closed) ends the watch; every camera-check event is made only from
``resolved``/``feedback`` so it never overrides a person.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from citysight.config import CitysightConfig, RuleConfig, RuleType
from citysight.contracts import Alert, AlertState
from serve_app.rules.engine import EngineOutput, Sighting
from serve_app.store.alerts import RECHECKED_STATES, AlertNotFound, AlertStore, InvalidTransition
from serve_app.store.evidence import EvidenceStore
from serve_app.store.reports import REPORT_SOURCE, recheck_rule, recheck_rules

logger = logging.getLogger(__name__)

CAMERA_CHECK = "camera-check"
"""Actor of the re-check's events."""
GRACE_MIN_S = 60.0
"""A camera silent this long past the deadline (or ``recheck_s``, if longer): not verified."""


@dataclass(slots=True)
class Watch:
    """One resolved alert being re-checked."""

    alert: Alert
    rule: RuleConfig
    resolved_at: float

    @property
    def deadline(self) -> float:
        """When the camera has looked long enough."""
        return self.resolved_at + self.rule.recheck_s

    @property
    def zone(self) -> str:
        """The zone the condition must return in (``*``: anywhere the rule looks)."""
        if self.alert.source == REPORT_SOURCE:
            return "*"
        if self.rule.type in (RuleType.PRESENCE, RuleType.COUNT):
            return self.alert.subject or "*"
        return "*"


class Recheck:
    """The re-check of one rules consumer (its cameras only).

    Args:
        r: Redis client.
        cfg: Configuration (rules with ``recheck_s``).
        alerts: Alert store.
        evidence: Evidence store (new sightings' snapshots become alert evidence).
        owns: Whether a camera belongs to this consumer (its shards).
        primary: This consumer drops watches no camera can serve (one consumer does).
    """

    def __init__(
        self,
        r: redis.Redis,
        cfg: CitysightConfig,
        alerts: AlertStore,
        evidence: EvidenceStore,
        owns: Callable[[str], bool],
        *,
        primary: bool = True,
    ) -> None:
        self.r = r
        self.cfg = cfg
        self.alerts = alerts
        self.evidence = evidence
        self.owns = owns
        self.primary = primary
        self.seen: dict[str, float] = {}
        self.watches: dict[str, Watch] = {}
        self.stats = {"watching": 0, "verified": 0, "reopened": 0, "failed": 0}

    # -- the consumer's hooks ----------------------------------------------------------------

    def observe(self, out: EngineOutput) -> None:
        """Look at one written batch: frames seen per camera, sightings of watched rules."""
        for cid, t in out.seen.items():
            if t > self.seen.get(cid, 0.0):
                self.seen[cid] = t
        if not out.sightings or not self.watches:
            return
        for alert_id, w in list(self.watches.items()):
            hit = self._match(w, out)
            if hit is not None:
                self._reopen(alert_id, w, hit)

    def tick(self, now: float | None = None, *, caught_up: bool = True) -> None:
        """Reload the watches from Redis; verify those whose camera looked long enough.

        Args:
            now: Wall time (default: now).
            caught_up: Whether the consumer has no backlog of detections left: a camera is
                declared silent (``recheck_failed``) only then, never while frames of the
                re-check window may still wait in the stream.
        """
        now = time.time() if now is None else now
        fresh: dict[str, Watch] = {}
        watches = self.alerts.recheck_watches()
        rules = recheck_rules(self.cfg) if watches else []
        for alert_id, resolved_at in watches:
            alert = self.alerts.get(alert_id)
            if alert is None or alert.state not in RECHECKED_STATES:
                if alert is None or self.owns(alert.camera_id or "-"):
                    self.alerts.end_watch(alert_id)
                continue
            if not alert.camera_id or not self.owns(alert.camera_id):
                if not alert.camera_id and self.primary:
                    self.alerts.end_watch(alert_id)  # no camera can check it
                continue
            rule = recheck_rule(self.cfg, alert, rules)
            if rule is None:
                self.alerts.end_watch(alert_id)  # the rule re-checks nothing (or is gone)
                continue
            w = Watch(alert, rule, resolved_at)
            fresh[alert_id] = w
            seen = self.seen.get(alert.camera_id, 0.0)
            if seen >= w.deadline:
                self._verify(alert_id, w)
                del fresh[alert_id]
            elif caught_up and now > w.deadline + max(GRACE_MIN_S, rule.recheck_s):
                self._failed(alert_id, w, seen)
                del fresh[alert_id]
        self.watches = fresh
        self.stats["watching"] = len(fresh)

    # -- decisions ---------------------------------------------------------------------------

    @staticmethod
    def _match(w: Watch, out: EngineOutput) -> Sighting | None:
        best: Sighting | None = None
        for (cid, rid, zone), s in out.sightings.items():
            if cid != w.alert.camera_id or rid != w.rule.id:
                continue
            if w.zone != "*" and zone != w.zone:
                continue
            if not w.resolved_at < s.t <= w.deadline:
                continue
            if best is None or (s.evidence is not None and best.evidence is None):
                best = s
        return best

    def _reopen(self, alert_id: str, w: Watch, s: Sighting) -> None:
        item = f"c{int(s.t * 1000):x}"
        refs = []
        if s.evidence is not None and s.snapshot_key:
            key = self.evidence.copy_snapshot_item(alert_id, item, s.snapshot_key)
            if key is not None:
                refs.append(
                    s.evidence.model_copy(update={"key": key, "id": item, "source": "recheck"})
                )
        after = s.t - w.resolved_at
        try:
            self.alerts.add_event(
                alert_id, actor=CAMERA_CHECK, action="reopened", to_state=AlertState.RAISED,
                evidence=refs, only_from=RECHECKED_STATES,
                note=f"camera {w.alert.camera_id} saw it again {after:.0f} s after it was "
                f"resolved (rule {w.rule.id})",
            )  # fmt: skip
        except (AlertNotFound, InvalidTransition):
            pass  # a person moved it meanwhile: theirs is the last word
        else:
            self.stats["reopened"] += 1
            logger.info(
                "alert %s reopened by the camera re-check (%s)", alert_id, w.alert.camera_id
            )
        self.alerts.end_watch(alert_id)
        self.watches.pop(alert_id, None)

    def _verify(self, alert_id: str, w: Watch) -> None:
        close = w.rule.recheck_close
        try:
            self.alerts.add_event(
                alert_id, actor=CAMERA_CHECK, action="verified",
                to_state=AlertState.CLOSED if close else None, only_from=RECHECKED_STATES,
                note=f"camera {w.alert.camera_id} watched {w.rule.recheck_s:g} s after the "
                f"resolution and did not see it again (rule {w.rule.id})",
            )  # fmt: skip
        except (AlertNotFound, InvalidTransition):
            pass
        else:
            self.stats["verified"] += 1
            logger.info("alert %s verified by the camera re-check", alert_id)
        self.alerts.end_watch(alert_id)

    def _failed(self, alert_id: str, w: Watch, seen: float) -> None:
        last = (
            f"last analysed frame {w.deadline - seen:.0f} s before the deadline"
            if seen
            else "no analysed frame"
        )
        try:
            self.alerts.add_event(
                alert_id, actor=CAMERA_CHECK, action="recheck_failed", only_from=RECHECKED_STATES,
                note=f"camera {w.alert.camera_id} could not re-check: {last}; not verified",
            )  # fmt: skip
        except (AlertNotFound, InvalidTransition):
            pass
        else:
            self.stats["failed"] += 1
            logger.warning("alert %s: camera re-check impossible (%s)", alert_id, last)
        self.alerts.end_watch(alert_id)
