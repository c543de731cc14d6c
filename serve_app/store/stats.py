"""Dispatch statistics over a time range: counts, handling times, SLA breaches, precision.

:func:`compute_stats` reads the alerts whose ``started_at`` lies in the range from the
scope's sorted-set index (``ZRANGEBYSCORE``) and their event logs, one page of 500 at a time
(one ``MGET`` and one pipelined ``LRANGE`` per page). Cost: O(log N + M·E) Redis work for M
alerts in range with E events each (N alerts retained in all); memory O(M) floats for the
percentiles plus O(G) per group, never the whole store. The caller bounds M
(:data:`MAX_ALERTS`) before it starts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Final

from citysight.config import CitysightConfig
from citysight.contracts import Alert, AlertEvent, AlertState
from serve_app.store.alerts import AlertStore, verdict_of

S = AlertState

GROUPS: Final = ("jurisdiction", "department", "kind", "camera", "rule")
"""What ``group_by`` may name."""
MAX_ALERTS: Final = 200_000
"""Most alerts one statistics request may cover (narrow the range beyond that)."""
MAX_DAYS: Final = 400
"""Most days the per-day series may have."""

_FINISHED: Final = frozenset({S.RESOLVED, S.FALSE_ALARM, S.CLOSED, S.FEEDBACK})
_HANDLED: Final = frozenset({S.RESOLVED, S.FALSE_ALARM, S.CLOSED})


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) with linear interpolation; ``None`` for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _summary(values: list[float]) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "count": len(values),
        "median": r(percentile(values, 0.5)),
        "p90": r(percentile(values, 0.9)),
    }


@dataclass(slots=True)
class _Acc:
    """Running totals of one group."""

    total: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    ack: list[float] = field(default_factory=list)
    resolve: list[float] = field(default_factory=list)
    sla_breaches: int = 0
    escalated: int = 0
    finished: int = 0
    reopened: int = 0
    verdicts: dict[str, int] = field(
        default_factory=lambda: {"confirmed": 0, "false_alarm": 0, "pending": 0}
    )

    def add(self, a: Alert, m: _Measures) -> None:
        self.total += 1
        self.by_state[a.state.value] = self.by_state.get(a.state.value, 0) + 1
        if m.ack_s is not None:
            self.ack.append(m.ack_s)
        if m.resolve_s is not None:
            self.resolve.append(m.resolve_s)
        self.sla_breaches += m.breached
        self.escalated += a.escalated
        self.finished += m.finished
        self.reopened += m.reopened
        self.verdicts[verdict_of(a)] += 1

    def result(self) -> dict[str, Any]:
        judged = self.verdicts["confirmed"] + self.verdicts["false_alarm"]
        return {
            "total": self.total,
            "by_state": {s.value: self.by_state.get(s.value, 0) for s in AlertState},
            "time_to_acknowledge_s": _summary(self.ack),
            "time_to_resolve_s": _summary(self.resolve),
            "sla_breaches": self.sla_breaches,
            "escalated": self.escalated,
            "reopened": self.reopened,
            "reopen_rate": round(self.reopened / self.finished, 4) if self.finished else None,
            "verdicts": dict(self.verdicts),
            "precision": round(self.verdicts["confirmed"] / judged, 4) if judged else None,
        }


@dataclass(slots=True)
class _Measures:
    ack_s: float | None
    resolve_s: float | None
    breached: bool
    finished: bool
    reopened: bool


def measure(a: Alert, events: list[AlertEvent], ack_sla_s: float | None, now: float) -> _Measures:
    """Handling times of one alert from its event log.

    * time to acknowledge: raise → first ``acknowledged`` event;
    * time to resolve: raise → first ``resolved``, ``false_alarm`` or ``closed`` event;
    * SLA breach: acknowledged later than the department's ``ack_sla_s``, or never
      acknowledged and still open (or handled) past it;
    * reopened: an event back to ``raised`` from a finished state.
    """
    t0 = a.raised_at or a.started_at.timestamp()
    ack_at = resolve_at = None
    finished = reopened = False
    for ev in events:
        at = ev.at.timestamp()
        if ev.to_state is S.ACKNOWLEDGED and ack_at is None:
            ack_at = at
        if ev.to_state in _HANDLED and resolve_at is None:
            resolve_at = at
        if ev.to_state in _FINISHED:
            finished = True
        if ev.to_state is S.RAISED and ev.from_state in _FINISHED:
            reopened = True
    breached = False
    if ack_sla_s is not None:
        if ack_at is not None:
            breached = ack_at - t0 > ack_sla_s
        else:
            end = resolve_at if resolve_at is not None else now
            # An alert dismissed (false alarm) within the SLA never needed acknowledging.
            breached = end - t0 > ack_sla_s
    return _Measures(
        ack_s=None if ack_at is None else max(0.0, ack_at - t0),
        resolve_s=None if resolve_at is None else max(0.0, resolve_at - t0),
        breached=breached,
        finished=finished,
        reopened=reopened,
    )


def group_key(cfg: CitysightConfig, group_by: str, level: str | None) -> Callable[[Alert], str]:
    """The function naming an alert's group."""
    tree = cfg.tree()
    if group_by == "jurisdiction":
        if level:
            return lambda a: tree.at_level(a.jurisdiction_path, level) or "(none)"
        return lambda a: a.jurisdiction or "(none)"
    if group_by == "department":
        return lambda a: a.department
    if group_by == "kind":
        return lambda a: a.kind.value
    if group_by == "camera":
        return lambda a: a.camera_id
    return lambda a: a.rule_id or a.kind.value


def _day(t: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(t, tz).date().isoformat()


def compute_stats(
    store: AlertStore,
    pages: Iterable[list[Alert]],
    *,
    group_by: str,
    level: str | None,
    since: float,
    until: float,
    now: float | None = None,
) -> dict[str, Any]:
    """Statistics of the alerts in ``pages`` (see the module docstring for the cost).

    Args:
        store: Where the event logs are read from.
        pages: Pages of alerts in scope and range (:meth:`AlertStore.iter_pages`).
        group_by: One of :data:`GROUPS`.
        level: For ``jurisdiction``: the level to group at (e.g. ``township``); ``None``
            groups by each alert's own (deepest) jurisdiction.
        since: Start of the range (Unix s), for the per-day series.
        until: End of the range.
        now: Reference time for open alerts' SLA (default: now).

    Returns:
        ``{"overall": {...}, "groups": [{"key", "name", ...}], "by_day": [...]}``.
    """
    cfg = store.cfg
    now = time.time() if now is None else now
    sla = {d.id: d.ack_sla_s for d in cfg.departments}
    key_of = group_key(cfg, group_by, level)
    tz = cfg.site.zone()
    overall = _Acc()
    groups: dict[str, _Acc] = {}
    days: dict[str, dict[str, Any]] = {}
    for page in pages:
        for a, events in zip(page, store.events_many([a.id for a in page]), strict=True):
            m = measure(a, events, sla.get(a.department), now)
            overall.add(a, m)
            k = key_of(a)
            groups.setdefault(k, _Acc()).add(a, m)
            d = days.setdefault(
                _day(a.started_at.timestamp(), tz),
                {"total": 0, "by_kind": {}, "false_alarm": 0, "sla_breaches": 0},
            )
            d["total"] += 1
            d["by_kind"][a.kind.value] = d["by_kind"].get(a.kind.value, 0) + 1
            d["false_alarm"] += verdict_of(a) == "false_alarm"
            d["sla_breaches"] += m.breached
    tree = cfg.tree()

    def name(k: str) -> str:
        if group_by == "jurisdiction" and k in tree:
            return tree.areas[k].name
        if group_by == "department":
            dep = next((d for d in cfg.departments if d.id == k), None)
            return dep.name or k if dep else k
        if group_by == "camera":
            cam = cfg.camera(k)
            return cam.name or k if cam else k
        return k

    # Every day of the range appears (zero days included) so a chart needs no gap logic.
    series = []
    first, last = datetime.fromtimestamp(since, tz).date(), datetime.fromtimestamp(until, tz).date()
    n_days = (last - first).days + 1
    if n_days <= MAX_DAYS:
        for i in range(n_days):
            day = first.fromordinal(first.toordinal() + i).isoformat()
            series.append(
                {"date": day, **days.get(day, {"total": 0, "by_kind": {}, "false_alarm": 0,
                                                "sla_breaches": 0})}
            )  # fmt: skip
    else:
        series = [{"date": k, **v} for k, v in sorted(days.items())]
    out_groups = [
        {"key": k, "name": name(k), **acc.result()}
        for k, acc in sorted(groups.items(), key=lambda kv: (-kv[1].total, kv[0]))
    ]
    return {"overall": overall.result(), "groups": out_groups, "by_day": series}
