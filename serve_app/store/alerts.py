"""Alerts in Redis: idempotent save, indexes, lifecycle transitions, SLA escalation.

Department membership: an alert belongs to its owning ``department`` and to every department
in ``escalated_to`` (:meth:`Alert.departments`). It is indexed under each of them, and its
feed messages name all of them, so escalation adds a supervisor without taking the alert
from its owner.

System alerts (:data:`SYSTEM_KINDS`, e.g. ``camera_offline``) end by themselves: their ids are
kept per camera (``citysight:camera:{id}:system-alerts``) and
:meth:`AlertStore.resolve_system_alert` / :meth:`AlertStore.resolve_camera_alerts` resolve or
close them with an event by ``system``.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import redis

from citysight import keys
from citysight.config import CitysightConfig
from citysight.contracts import Alert, AlertEvent, AlertKind, AlertState, EvidenceRef
from serve_app.store.feed import publish_feed
from serve_app.store.lifecycle import (
    FALSE_OUTCOMES,
    OPEN_STATES,
    UNACKNOWLEDGED,
    AlertNotFound,
    InvalidTransition,
    check_transition,
)
from serve_app.store.scripts import evalsha_pipelined

logger = logging.getLogger(__name__)

__all__ = ["SYSTEM_ACTOR", "SYSTEM_KINDS", "AlertNotFound", "AlertStore", "InvalidTransition"]

SYSTEM_KINDS: frozenset[AlertKind] = frozenset({AlertKind.CAMERA_OFFLINE, AlertKind.ANALYTICS_DOWN})
"""Alert kinds raised about the system itself, which resolve themselves when the cause ends."""
SYSTEM_ACTOR = "system"
"""Actor of the events of self-resolving alerts."""
RECOVERED = "recovered"
"""Outcome of a system alert whose cause ended (the camera runs again)."""
CAMERA_REMOVED = "camera_removed"
"""Outcome of the system alerts of a deleted camera (closed)."""

# One atomic step per alert: an existing alert key means "saved before"; only a new alert
# gets its "raised" event, its index entries and its feed message, so redelivered detections
# (same deterministic id) can never add a second event or a second feed message. A Lua error
# does not roll back what the script wrote before it, so every key type is checked before
# the first write and the alert key (the "saved" mark) is written last: a failed save leaves
# nothing that a retry would mistake for a saved alert.
_SAVE_NEW = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local want = {'list', 'zset', 'zset', 'stream', 'zset'}
for i = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[i])['ok']
  local w = want[i - 1] or 'zset'
  if t ~= 'none' and t ~= w then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t)
  end
end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[6], ARGV[4], ARGV[5])
  redis.call('EXPIRE', KEYS[6], ARGV[2])
end
for i = 7, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[4], ARGV[5])
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
local f = {}
for i = 7, #ARGV do f[#f + 1] = ARGV[i] end
redis.call('XADD', KEYS[5], '*', unpack(f))
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

_PAGE = 200
RECHECKED_STATES: frozenset[AlertState] = frozenset({AlertState.RESOLVED, AlertState.FEEDBACK})
"""States in which a resolved alert waits for its camera re-check."""


def _ts(dt: datetime) -> float:
    return dt.timestamp() if dt.tzinfo else dt.replace(tzinfo=UTC).timestamp()


def _feed_fields(alert: Alert, type_: str, payload: dict[str, Any]) -> list[str]:
    extra = ["departments", ",".join(alert.departments())] if alert.escalated_to else []
    if alert.jurisdiction_path:
        extra += ["jurisdictions", ",".join(alert.jurisdiction_path)]
    return [
        "type", type_,
        "department", alert.department,
        "kind", alert.kind.value,
        "camera_id", alert.camera_id,
        "severity", alert.severity.value,
        "lat", repr(float(alert.location.lat)),
        "lon", repr(float(alert.location.lon)),
        "d", json.dumps(payload, separators=(",", ":"), default=str),
        *extra,
    ]  # fmt: skip


class AlertStore:
    """Alerts, their append-only events and indexes in Redis.

    Args:
        r: Redis client (with or without ``decode_responses``).
        cfg: Configuration (retention TTLs, departments and their SLAs).
        max_retries: Optimistic-lock retries of a transition before giving up.
    """

    def __init__(self, r: redis.Redis, cfg: CitysightConfig, *, max_retries: int = 50) -> None:
        self.r = r
        self.cfg = cfg
        self.max_retries = max_retries
        self._save = r.register_script(_SAVE_NEW)

    @property
    def ttl_s(self) -> int:
        """Alert (and event log) time to live."""
        return self.cfg.retention.alert_ttl_s

    # -- writes ----------------------------------------------------------------------------

    def save_new(self, alerts: list[Alert]) -> list[Alert]:
        """Save alerts that do not exist yet (idempotent by id), in one round trip.

        New alerts get an ``AlertEvent(None → raised, actor="rules")``, are indexed by time
        (all, department, incident) and published on the feed, atomically per alert.

        Returns:
            The alerts that were new (in input order).
        """
        if not alerts:
            return []
        now = time.time()
        calls: list[list[Any]] = []
        prepared: list[Alert] = []
        tree = self.cfg.tree()
        for alert in alerts:
            a = self._placed(alert.model_copy(update={"raised_at": alert.raised_at or now}))
            report = a.source == "report"
            ev = AlertEvent(
                alert_id=a.id,
                seq=0,
                from_state=None,
                to_state=a.state,
                actor=(a.reporter or "reporter") if report else "rules",
                note=a.summary,
                action="report" if report else "",
                evidence=[e.id for e in a.evidence if e.id] if report else [],
            )
            body = a.model_dump_json()
            jur_keys = [keys.jurisdiction_index(j) for j in a.jurisdiction_path if j in tree]
            calls.append([
                6 + len(jur_keys), keys.alert_key(a.id), keys.events_key(a.id), keys.ALERTS_ALL,
                keys.dept_index(a.department), keys.FEED_STREAM,
                keys.incident_key(a.incident_id or ""), *jur_keys,
                body, self.ttl_s, ev.model_dump_json(), _ts(a.started_at), a.id,
                a.incident_id or "", *_feed_fields(a, "alert", a.to_api()),
            ])  # fmt: skip
            prepared.append(a)
        results = evalsha_pipelined(self.r, self._save, calls)
        failed = next((x for x in results if isinstance(x, Exception)), None)
        if failed is not None:
            raise failed  # the consumer keeps the batch and writes it again (idempotent)
        return [a for a, ok in zip(prepared, results, strict=True) if int(ok) == 1]

    def _placed(self, a: Alert) -> Alert:
        """The alert with its jurisdiction and path filled from the hierarchy.

        Writers that know only a position (a report) get the area it lies in; writers that
        know only the jurisdiction get its path. A path given by the writer is kept.
        """
        tree = self.cfg.tree()
        if a.jurisdiction_path or not tree:
            if not a.jurisdiction_path and a.jurisdiction:
                return a.model_copy(update={"jurisdiction_path": [a.jurisdiction]})
            return a
        jur = a.jurisdiction
        if not jur or jur == "default":
            jur = tree.locate(a.location.lat, a.location.lon) or jur
        return a.model_copy(update={"jurisdiction": jur, "jurisdiction_path": tree.path(jur)})

    def transition(
        self,
        alert_id: str,
        to_state: AlertState,
        *,
        actor: str,
        note: str = "",
        unit: str | None = None,
        outcome: str | None = None,
    ) -> Alert:
        """Move an alert to ``to_state`` and append the event (optimistic locking).

        Raises:
            AlertNotFound: No such alert.
            InvalidTransition: The state machine forbids the move (or a unit/outcome is
                missing).
        """
        to_state = AlertState(to_state)

        def change(alert: Alert) -> tuple[Alert, AlertEvent]:
            check_transition(alert.state, to_state, unit=unit, outcome=outcome)
            update: dict[str, Any] = {"state": to_state, "updated_at": datetime.now(UTC)}
            if to_state is AlertState.ASSIGNED:
                update["assigned_unit"] = unit
            if to_state is AlertState.RESOLVED:
                update["outcome"] = outcome
            if to_state is AlertState.FALSE_ALARM:
                update["outcome"] = outcome or "false_alarm"
            if to_state is AlertState.RAISED:  # reopened: the verdict no longer holds
                update.update(outcome=None, assigned_unit=None)
            ev = AlertEvent(
                alert_id=alert_id,
                seq=0,
                from_state=alert.state,
                to_state=to_state,
                actor=actor,
                note=note,
                unit=unit,
                outcome=update.get("outcome"),
            )
            return alert.model_copy(update=update), ev

        return self._update(alert_id, change)

    def add_event(
        self,
        alert_id: str,
        *,
        actor: str,
        action: str,
        note: str = "",
        evidence: list[EvidenceRef] | None = None,
        to_state: AlertState | None = None,
        outcome: str | None = None,
        only_from: frozenset[AlertState] | None = None,
    ) -> Alert:
        """Append an event that records more than a transition: evidence added (report and
        feedback photos, a re-check snapshot) and an ``action``, optionally with a transition.

        Args:
            alert_id: The alert.
            actor: Who (a principal, or ``camera-check``).
            action: ``report``, ``feedback``, ``verified``, ``reopened``, ``recheck_failed``.
            note: Free text.
            evidence: Items to add to the alert's evidence (already stored).
            to_state: A transition to make with the event (checked by the state machine);
                ``None`` keeps the state.
            outcome: Outcome recorded with a ``resolved`` or ``closed`` transition.
            only_from: The event is made only while the alert is in one of these states
                (otherwise :class:`InvalidTransition`): a re-check never acts on an alert a
                person moved meanwhile.

        Raises:
            AlertNotFound: No such alert.
            InvalidTransition: Forbidden transition, or the alert left ``only_from``.
        """
        refs = list(evidence or [])

        def change(alert: Alert) -> tuple[Alert, AlertEvent]:
            if only_from is not None and alert.state not in only_from:
                raise InvalidTransition(
                    alert.state, to_state or alert.state, f"alert is {alert.state.value} now"
                )
            target = alert.state if to_state is None else AlertState(to_state)
            update: dict[str, Any] = {"updated_at": datetime.now(UTC)}
            if target is not alert.state:
                check_transition(alert.state, target, unit="-", outcome=outcome or "-")
                update["state"] = target
                if target is AlertState.RAISED:  # reopened: the verdict no longer holds
                    update.update(outcome=None, assigned_unit=None, ended_at=None)
                elif outcome:
                    update["outcome"] = outcome
            if refs:
                known = {e.id for e in alert.evidence}
                update["evidence"] = [*alert.evidence, *(e for e in refs if e.id not in known)]
            ev = AlertEvent(
                alert_id=alert_id, seq=0, from_state=alert.state, to_state=target, actor=actor,
                note=note, outcome=update.get("outcome"), action=action,
                evidence=[e.id for e in refs],
            )  # fmt: skip
            return alert.model_copy(update=update), ev

        return self._update(alert_id, change)

    def recheck_watches(self, limit: int = 1000) -> list[tuple[str, float]]:
        """Resolved alerts waiting for their camera re-check: ``(alert id, resolved at)``,
        oldest first."""
        rows = cast(
            "list[tuple[bytes | str, float]]",
            self.r.zrange(keys.RECHECK_WATCHES, 0, limit - 1, withscores=True),
        )
        return [(keys.text(m) or "", float(t)) for m, t in rows]

    def end_watch(self, alert_id: str) -> None:
        """The camera re-check of ``alert_id`` is over (verified, reopened, or not needed)."""
        self.r.zrem(keys.RECHECK_WATCHES, alert_id)

    def _update(self, alert_id: str, change: Callable[[Alert], tuple[Alert, AlertEvent]]) -> Alert:
        akey, ekey = keys.alert_key(alert_id), keys.events_key(alert_id)
        for _ in range(self.max_retries):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(akey, ekey)  # type: ignore[no-untyped-call]  # redis: unannotated
                    raw = pipe.get(akey)
                    if raw is None:
                        raise AlertNotFound(alert_id)
                    old = Alert.model_validate_json(raw)
                    new, ev = change(old)
                    ev = ev.model_copy(update={"seq": int(pipe.llen(ekey))})
                    pipe.multi()
                    pipe.set(akey, new.model_dump_json(), keepttl=True)
                    pipe.rpush(ekey, ev.model_dump_json())
                    before, after = old.departments(), new.departments()
                    for d in before:
                        if d not in after:
                            pipe.zrem(keys.dept_index(d), alert_id)
                    for d in after:
                        if d not in before:
                            pipe.zadd(keys.dept_index(d), {alert_id: _ts(new.started_at)})
                    # The camera re-check learns of every resolution in the same transaction
                    # (durable: a rules consumer restarting meanwhile still finds it); any
                    # other move by a person (reopened, closed) ends the watch.
                    if new.kind not in SYSTEM_KINDS:
                        if new.state in RECHECKED_STATES and old.state not in RECHECKED_STATES:
                            pipe.zadd(keys.RECHECK_WATCHES, {alert_id: time.time()})
                        elif new.state not in RECHECKED_STATES:
                            pipe.zrem(keys.RECHECK_WATCHES, alert_id)
                    # Every department that saw the alert before or sees it now gets the event
                    # (the owner learns of the escalation, the supervisor of the alert).
                    told = [*after, *(d for d in before if d not in after)]
                    publish_feed(
                        pipe, type="alert_event",
                        payload={"event": ev.model_dump(mode="json"), "alert": new.to_api()},
                        department=new.department, kind=new.kind.value, camera_id=new.camera_id,
                        severity=new.severity.value, lat=new.location.lat, lon=new.location.lon,
                        departments=told, jurisdictions=new.jurisdiction_path,
                    )  # fmt: skip
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue
        raise RuntimeError(f"alert {alert_id}: too much contention, gave up")

    def escalate_overdue(self, now: float | None = None) -> list[Alert]:
        """Escalate alerts not acknowledged within their department's ``ack_sla_s``.

        Escalation *adds* the department's supervisor (``escalated_to``, ``escalated=True``):
        the owning department keeps seeing and acting on the alert, the supervisor gains it
        (its index), and the event is published on the feed for both. Only alerts the
        department owns (state ``raised`` or ``assigned``, not escalated yet) escalate.

        Returns:
            The escalated alerts.
        """
        now = time.time() if now is None else now
        out: list[Alert] = []
        for dept in self.cfg.departments:
            if not dept.supervisor:
                continue
            cutoff = now - dept.ack_sla_s
            ids = [
                keys.text(i) or ""
                for i in cast(  # no ``withscores``: plain members
                    "list[bytes | str]",
                    self.r.zrangebyscore(keys.dept_index(dept.id), "-inf", cutoff),
                )
            ]
            for alert_id, raw in zip(ids, self._mget(ids), strict=True):
                if raw is None:
                    continue
                a = Alert.model_validate_json(raw)
                if a.escalated or a.state not in UNACKNOWLEDGED or a.department != dept.id:
                    continue
                if (a.raised_at or _ts(a.started_at)) > cutoff:
                    continue
                note = (
                    f"escalated to {dept.supervisor}: not acknowledged within "
                    f"{dept.ack_sla_s:g} s by {dept.id} (who keeps it)"
                )

                def change(
                    cur: Alert, sup: str = dept.supervisor, note: str = note, src: str = dept.id
                ) -> tuple[Alert, AlertEvent]:
                    if cur.escalated or cur.state not in UNACKNOWLEDGED or cur.department != src:
                        raise _Skip
                    new = cur.model_copy(
                        update={
                            "escalated": True,
                            "escalated_to": [*cur.escalated_to, sup],
                            "updated_at": datetime.now(UTC),
                        }
                    )
                    ev = AlertEvent(
                        alert_id=cur.id,
                        seq=0,
                        from_state=cur.state,
                        to_state=cur.state,
                        actor="sla",
                        note=note,
                    )
                    return new, ev

                try:
                    out.append(self._update(alert_id, change))
                except (_Skip, AlertNotFound):
                    continue
        if out:
            logger.info("escalated %d overdue alert(s)", len(out))
        return out

    # -- system alerts (resolve themselves) ------------------------------------------------

    def track_system_alerts(self, alerts: list[Alert]) -> None:
        """Remember the ids of system alerts (:data:`SYSTEM_KINDS`) per camera (idempotent)."""
        mine = [a for a in alerts if a.kind in SYSTEM_KINDS]
        if not mine:
            return
        pipe = self.r.pipeline(transaction=False)
        for a in mine:
            key = keys.camera_system_alerts_key(a.camera_id)
            pipe.sadd(key, a.id)
            pipe.expire(key, self.ttl_s)
        pipe.execute()

    def resolve_system_alert(
        self, alert_id: str, *, note: str, outcome: str = RECOVERED, close: bool = False
    ) -> Alert | None:
        """End an open alert on the system's behalf: an event by ``system``.

        The alert goes from any open state to ``resolved`` (or ``closed`` when ``close``),
        with ``outcome`` and ``ended_at``; the event reaches every department of the alert.

        Args:
            alert_id: The alert (deterministic id).
            note: Why it ended (event note).
            outcome: Outcome recorded (``recovered`` by default).
            close: Close instead of resolve (e.g. the camera was deleted).

        Returns:
            The updated alert, or ``None`` when it is missing or no longer open.
        """
        to_state = AlertState.CLOSED if close else AlertState.RESOLVED

        def change(cur: Alert) -> tuple[Alert, AlertEvent]:
            if cur.state not in OPEN_STATES:
                raise _Skip
            now = datetime.now(UTC)
            new = cur.model_copy(
                update={"state": to_state, "outcome": outcome, "ended_at": now, "updated_at": now}
            )
            ev = AlertEvent(
                alert_id=cur.id, seq=0, from_state=cur.state, to_state=to_state,
                actor=SYSTEM_ACTOR, note=note, outcome=outcome,
            )  # fmt: skip
            return new, ev

        try:
            return self._update(alert_id, change)
        except (_Skip, AlertNotFound):
            return None

    def reopen_system_alert(self, alert_id: str, *, note: str) -> Alert | None:
        """Raise again a system alert that the system resolved (its cause came back).

        Returns:
            The reopened alert, or ``None`` when it is missing, open, or was ended by a person.
        """

        def change(cur: Alert) -> tuple[Alert, AlertEvent]:
            if cur.state is not AlertState.RESOLVED or cur.outcome != RECOVERED:
                raise _Skip
            new = cur.model_copy(
                update={"state": AlertState.RAISED, "outcome": None, "ended_at": None,
                        "updated_at": datetime.now(UTC)}
            )  # fmt: skip
            ev = AlertEvent(
                alert_id=cur.id, seq=0, from_state=cur.state, to_state=AlertState.RAISED,
                actor=SYSTEM_ACTOR, note=note,
            )  # fmt: skip
            return new, ev

        try:
            a = self._update(alert_id, change)
        except (_Skip, AlertNotFound):
            return None
        self.track_system_alerts([a])
        return a

    def resolve_camera_alerts(
        self,
        camera_id: str,
        *,
        note: str,
        kinds: set[AlertKind] | None = None,
        outcome: str = RECOVERED,
        close: bool = False,
    ) -> list[Alert]:
        """Resolve (or close) every open system alert of a camera (optionally only ``kinds``).

        Returns:
            The alerts resolved now. Ids of alerts no longer open leave the camera's set.
        """
        key = keys.camera_system_alerts_key(camera_id)
        ids = sorted(keys.text(i) or "" for i in self.r.smembers(key))
        done: list[Alert] = []
        gone: list[str] = []
        for alert_id, raw in zip(ids, self._mget(ids), strict=True):
            a = Alert.model_validate_json(raw) if raw is not None else None
            if a is None or a.state not in OPEN_STATES:
                gone.append(alert_id)
                continue
            if kinds is not None and a.kind not in kinds:
                continue
            res = self.resolve_system_alert(alert_id, note=note, outcome=outcome, close=close)
            if res is not None:
                done.append(res)
            gone.append(alert_id)
        if gone:
            self.r.srem(key, *gone)
        if done:
            logger.info("%s: %d system alert(s) ended: %s", camera_id, len(done), note)
        return done

    def prune_indexes(self, now: float | None = None) -> int:
        """Drop index entries of alerts past their TTL (the alerts themselves expire).

        Covers the configured departments, ``unrouted`` and the configured jurisdictions
        (no keyspace scan).
        """
        cutoff = (time.time() if now is None else now) - self.ttl_s
        pipe = self.r.pipeline(transaction=False)
        pipe.zremrangebyscore(keys.ALERTS_ALL, "-inf", cutoff)
        for dept in {d.id for d in self.cfg.departments} | {"unrouted"}:
            pipe.zremrangebyscore(keys.dept_index(dept), "-inf", cutoff)
        for jur in self.cfg.tree().areas:
            pipe.zremrangebyscore(keys.jurisdiction_index(jur), "-inf", cutoff)
        return int(sum(int(x) for x in pipe.execute()))

    # -- reads -----------------------------------------------------------------------------

    def _mget(self, ids: list[str]) -> list[Any]:
        if not ids:
            return []
        return list(self.r.mget([keys.alert_key(i) for i in ids]))

    def get(self, alert_id: str) -> Alert | None:
        """One alert, or ``None`` when missing or expired."""
        raw = self.r.get(keys.alert_key(alert_id))
        return Alert.model_validate_json(raw) if raw is not None else None

    def events(self, alert_id: str) -> list[AlertEvent]:
        """The alert's events, oldest first."""
        return [
            AlertEvent.model_validate_json(x)
            for x in self.r.lrange(keys.events_key(alert_id), 0, -1)
        ]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        """A cross-camera incident: its alert ids and cameras (``None`` when unknown)."""
        members = cast("list[bytes | str]", self.r.zrange(keys.incident_key(incident_id), 0, -1))
        ids = [keys.text(i) or "" for i in members]
        alerts = [Alert.model_validate_json(x) for x in self._mget(ids) if x is not None]
        if not alerts:
            return None
        cams: list[str] = []
        for a in alerts:
            for c in a.camera_ids or [a.camera_id]:
                if c not in cams:
                    cams.append(c)
        return {
            "incident_id": incident_id,
            "kind": alerts[0].kind.value,
            "alert_ids": [a.id for a in alerts],
            "camera_ids": cams,
            "started_at": min(_ts(a.started_at) for a in alerts),
        }

    def _index_iter(self, index: str, hi: float, lo: float) -> Iterator[tuple[float, str]]:
        offset = 0
        while True:
            rows = cast(  # ``withscores``: (member, score) pairs
                "list[tuple[bytes | str, float]]",
                self.r.zrevrangebyscore(index, hi, lo, start=offset, num=_PAGE, withscores=True),
            )
            for member, score in rows:
                yield float(score), keys.text(member) or ""
            if len(rows) < _PAGE:
                return
            offset += _PAGE

    def query(
        self,
        *,
        departments: set[str] | None = None,
        kinds: set[str] | None = None,
        states: set[str] | None = None,
        camera_ids: set[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        before: str | None = None,
        severities: set[str] | None = None,
        jurisdiction: str | None = None,
    ) -> list[Alert]:
        """Alerts newest first (by ``started_at``, then id), filtered.

        Args:
            departments: Departments to include; ``None`` means all.
            kinds: Alert kinds to include.
            states: Lifecycle states to include.
            camera_ids: Cameras to include (an incident matches any of its cameras).
            since: Earliest ``started_at`` (unix seconds).
            until: Latest ``started_at``.
            limit: Maximum number of alerts.
            before: Cursor: only alerts strictly after this alert id in the order.
            severities: Severities to include.
            jurisdiction: Only alerts in this jurisdiction or below it (read from its
                index, so a township's list never walks the whole city's).
        """
        if limit <= 0:
            return []
        hi: float = until if until is not None else float("inf")
        lo: float = since if since is not None else float("-inf")
        cursor: tuple[float, str] | None = None
        if before:
            score = self.r.zscore(keys.ALERTS_ALL, before)
            if score is None:
                return []
            cursor = (float(score), before)
            hi = min(hi, float(score))
        indexes = self._indexes(departments, jurisdiction)
        streams = [self._index_iter(ix, hi, lo) for ix in indexes]
        merged = heapq.merge(*streams, key=lambda x: (-x[0], _neg(x[1])))
        out: list[Alert] = []
        seen: set[str] = set()
        batch: list[tuple[float, str]] = []

        def flush() -> bool:
            for (_, _aid), raw in zip(batch, self._mget([b[1] for b in batch]), strict=True):
                if raw is None:
                    continue
                a = Alert.model_validate_json(raw)
                if departments is not None and departments.isdisjoint(a.departments()):
                    continue
                if jurisdiction is not None and jurisdiction not in a.jurisdiction_path:
                    continue
                if kinds and a.kind.value not in kinds:
                    continue
                if states and a.state.value not in states:
                    continue
                if camera_ids and not ({a.camera_id, *a.camera_ids} & camera_ids):
                    continue
                if severities and a.severity.value not in severities:
                    continue
                out.append(a)
                if len(out) >= limit:
                    return True
            batch.clear()
            return False

        for score, aid in merged:
            if aid in seen:
                continue
            seen.add(aid)
            # order is (score desc, id desc): keep only what comes after the cursor
            if cursor is not None and not (
                score < cursor[0] or (score == cursor[0] and aid < cursor[1])
            ):
                continue
            batch.append((score, aid))
            if len(batch) >= max(limit, 50) and flush():
                return out
        flush()
        return out[:limit]

    def _indexes(self, departments: set[str] | None, jurisdiction: str | None) -> list[str]:
        """The sorted sets to read for a scope (the smallest that covers it)."""
        # A configured area has its own index; anything else matches no alert path that
        # the hierarchy wrote, so the department indexes (filtered) are read.
        if jurisdiction is not None and jurisdiction in self.cfg.tree():
            return [keys.jurisdiction_index(jurisdiction)]
        if departments is None:
            return [keys.ALERTS_ALL]
        return [keys.dept_index(d) for d in sorted(departments)]

    def iter_pages(
        self,
        since: float,
        until: float,
        *,
        departments: set[str] | None = None,
        jurisdiction: str | None = None,
        page: int = 500,
    ) -> Iterator[list[Alert]]:
        """Every alert in scope whose ``started_at`` lies in ``[since, until]``, in pages.

        Reads only the index entries inside the range (``ZRANGEBYSCORE``, O(log N + M)) and
        the alerts themselves in ``MGET`` pages of ``page``: memory holds one page, never
        the whole range. An alert in several department indexes comes once. Oldest first.
        """
        indexes = self._indexes(departments, jurisdiction)
        seen: set[str] = set()
        for ix in indexes:
            offset = 0
            while True:
                rows = cast(
                    "list[bytes | str]",
                    self.r.zrangebyscore(ix, since, until, start=offset, num=page),
                )
                ids = [i for i in (keys.text(m) or "" for m in rows) if i not in seen]
                if len(indexes) > 1:
                    seen.update(ids)
                out: list[Alert] = []
                for raw in self._mget(ids):
                    if raw is None:
                        continue
                    a = Alert.model_validate_json(raw)
                    if departments is not None and departments.isdisjoint(a.departments()):
                        continue
                    if jurisdiction is not None and jurisdiction not in a.jurisdiction_path:
                        continue
                    out.append(a)
                if out:
                    yield out
                if len(rows) < page:
                    break
                offset += page

    def count_range(
        self,
        since: float,
        until: float,
        *,
        departments: set[str] | None = None,
        jurisdiction: str | None = None,
    ) -> int:
        """Index entries in ``[since, until]`` for a scope (an upper bound, ``ZCOUNT``)."""
        return sum(
            int(self.r.zcount(ix, since, until)) for ix in self._indexes(departments, jurisdiction)
        )

    def events_many(self, alert_ids: list[str]) -> list[list[AlertEvent]]:
        """The events of several alerts in one round trip (oldest first each)."""
        if not alert_ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for aid in alert_ids:
            pipe.lrange(keys.events_key(aid), 0, -1)
        return [[AlertEvent.model_validate_json(x) for x in rows] for rows in pipe.execute()]

    def precision(self) -> dict[str, Any]:
        """Per-rule and per-camera verdict counts from outcomes.

        An alert with a false outcome (``false_alarm`` state, or an outcome in
        ``FALSE_OUTCOMES``) counts as a false alarm, any other outcome as confirmed; alerts
        without an outcome are pending. ``precision = confirmed / (confirmed + false_alarm)``
        or ``None`` before any verdict.
        """
        by: dict[str, dict[str, dict[str, Any]]] = {"by_rule": {}, "by_camera": {}}
        members = cast("list[bytes | str]", self.r.zrange(keys.ALERTS_ALL, 0, -1))
        ids = [keys.text(i) or "" for i in members]
        for start in range(0, len(ids), 500):
            for raw in self._mget(ids[start : start + 500]):
                if raw is None:
                    continue
                a = Alert.model_validate_json(raw)
                verdict = verdict_of(a)
                for group, key in (
                    ("by_rule", a.rule_id or a.kind.value),
                    ("by_camera", a.camera_id),
                ):
                    c = by[group].setdefault(key, {"confirmed": 0, "false_alarm": 0, "pending": 0})
                    c[verdict] += 1
        for counts in by.values():
            for c in counts.values():
                judged = c["confirmed"] + c["false_alarm"]
                c["precision"] = c["confirmed"] / judged if judged else None
        return by


def verdict_of(a: Alert) -> str:
    """``confirmed``, ``false_alarm`` or ``pending`` (no outcome yet) from the outcome."""
    if a.outcome is None:
        return "pending"
    return "false_alarm" if a.outcome in FALSE_OUTCOMES else "confirmed"


class _Skip(Exception):
    """The alert no longer needs the change (another writer got there first)."""


def _neg(s: str) -> tuple[int, ...]:
    # Sort key that orders strings descending inside an ascending heap merge.
    return (*tuple(-ord(c) for c in s), 1)
