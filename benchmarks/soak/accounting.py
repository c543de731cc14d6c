"""What the soak counts, as pure functions (unit-tested without a running system).

Definitions used in ``benchmarks/results/soak.json``:

* **Detections flow** on a camera while its entries keep reaching its
  ``citysight:detections:{shard}`` stream (the stream entry ids carry Redis' own clock). A
  fault *interrupted* a camera when, after the fault, a gap of at least ``gap_s`` without
  entries began; the camera *recovered* at its first entry after that gap. A camera with no
  such gap was not interrupted (recovery 0 s).
* **Health shows it** at the first ``/health`` sample after the fault that is not ``ok`` (any
  status other than ``ok``, a failed request or a 503 count) or in which a named component is
  not ``running``.
* **Alerts lost** (per fault window, alerts whose ``started_at`` lies in it):
  ``stored_lost`` — alerts some subscriber received that the alert store no longer has (a
  durability loss); ``undelivered`` — alerts the store has that a subscriber entitled to them
  never received although it stayed subscribed with resume (a delivery loss). Both must be 0:
  alerts are written before they are published, Redis runs with AOF, and WebSocket clients
  resume from their last feed id. Frames that were never analysed while a detector was down
  raise no alert and are not "lost alerts"; they show as the detection gap instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from citysight import keys


def entry_ms(entry_id: str | bytes) -> int:
    """The millisecond part of a Redis stream entry id (``"1700000000000-3"``)."""
    return keys.stream_id(entry_id)[0]


@dataclass(frozen=True)
class Interruption:
    """One camera's detection gap after a fault (times in Unix seconds)."""

    camera_id: str
    interrupted: bool
    stopped_at: float | None  # last entry before the gap
    resumed_at: float | None  # first entry after the gap; None: not (yet) resumed


def interruption(
    camera_id: str,
    times: Sequence[float],
    fault_at: float,
    until: float,
    gap_s: float = 3.0,
    in_flight_s: float = 1.0,
) -> Interruption:
    """Find the detection gap of at least ``gap_s`` that the fault caused.

    The gap is the first one ending later than ``in_flight_s`` after the fault (results
    published right after it were already on their way); gaps that ended before are history.

    Args:
        camera_id: The camera.
        times: Its entry times (Unix s), ascending.
        fault_at: When the fault was injected.
        until: End of the observation (an open gap reaching it counts as a gap).
        gap_s: Shortest silence that counts as an interruption (see :func:`gap_threshold`).
        in_flight_s: Entries this soon after the fault do not end a gap.
    """
    prev: float | None = None
    for t in times:
        if prev is not None and t - prev >= gap_s and t > fault_at + in_flight_s:
            return Interruption(camera_id, True, prev, t)
        prev = t
    if prev is None or until - max(prev, fault_at) >= gap_s:
        return Interruption(camera_id, True, prev, None)
    return Interruption(camera_id, False, None, None)


def gap_threshold(
    times: Sequence[float], fault_at: float, floor_s: float, cap_s: float = 12.0
) -> float:
    """Silence that counts as an interruption for one camera: twice the 90th percentile of
    its intervals between results in the minute before the fault, within
    ``[floor_s, cap_s]``.

    On a loaded host a camera's frames are analysed irregularly and in bursts (a batch's
    results share a millisecond; the mux drops the oldest frame while inference is busy), so
    a fixed few seconds would call normal jitter an outage, and one long start-up pause must
    not hide a real outage either.
    """
    before = sorted(t for t in times if fault_at - 60.0 <= t < fault_at)
    steps = sorted(b - a for a, b in itertools.pairwise(before) if b - a > 0.01)
    p90 = steps[min(len(steps) - 1, int(0.9 * len(steps)))] if steps else 0.0
    return round(min(cap_s, max(floor_s, 2.0 * p90)), 2)


def recovery_s(gaps: Iterable[Interruption], fault_at: float) -> float | None:
    """Seconds from the fault until every interrupted camera resumed (0: none interrupted;
    ``None``: some camera never resumed)."""
    worst = 0.0
    for g in gaps:
        if not g.interrupted:
            continue
        if g.resumed_at is None:
            return None
        worst = max(worst, g.resumed_at - fault_at)
    return round(worst, 2)


def health_not_ok(sample: Mapping[str, Any], components: Sequence[str] = ()) -> bool:
    """Whether a ``/health`` sample reports a problem (overall, or in one of ``components``)."""
    if sample.get("code") != 200 or sample.get("status") != "ok":
        return True
    states = sample.get("states") or {}
    return any(states.get(c) not in (None, "running") for c in components)


def first_after(samples: Sequence[Mapping[str, Any]], after: float, predicate: Any) -> float | None:
    """Time (``t``) of the first sample at or after ``after`` satisfying ``predicate``."""
    for s in samples:
        if s["t"] >= after and predicate(s):
            return float(s["t"])
    return None


@dataclass
class Subscription:
    """What one WebSocket subscriber received."""

    name: str
    department: str  # "*" for all departments
    connected_at: float
    received: dict[str, float]  # alert id -> first receipt (Unix s)
    foreign: int = 0  # alerts received outside its department


def alert_departments(alert: Mapping[str, Any]) -> set[str]:
    """The departments an alert (its JSON) belongs to: its owner and ``escalated_to``."""
    out = {str(d) for d in alert.get("escalated_to") or () if d}
    if alert.get("department"):
        out.add(str(alert["department"]))
    return out


def alert_losses(
    stored: Mapping[str, Mapping[str, Any]],
    subscribers: Sequence[Subscription],
    window: tuple[float, float],
    owner_of: Any,
) -> dict[str, Any]:
    """Count lost alerts in ``window`` (by ``started_at``, Unix s).

    Args:
        stored: Alert id -> alert (``started_s``, ``kind``, ``departments``) from the final
            store listing.
        subscribers: Every subscriber's receipts.
        window: ``(start, end)`` in Unix seconds.
        owner_of: ``kind -> department`` the alert was routed to when raised (for alerts
            listed without ``departments``).

    Returns:
        ``stored_lost`` and ``undelivered`` counts with the ids (at most 20 each).
    """
    lo, hi = window
    seen: dict[str, float] = {}
    for sub in subscribers:
        seen.update(sub.received)
    in_window = {aid: a for aid, a in stored.items() if lo <= float(a["started_s"]) <= hi}
    # An alert received in the window but missing from the store. Receipt time bounds its
    # start (it was raised before it was received).
    stored_lost = sorted(aid for aid, t in seen.items() if lo <= t <= hi + 60 and aid not in stored)
    undelivered: set[str] = set()
    misses = 0
    for sub in subscribers:
        for aid, a in in_window.items():
            depts = set(a.get("departments") or ()) or {owner_of(a["kind"])}
            if sub.department != "*" and sub.department not in depts:
                continue
            if aid not in sub.received:
                undelivered.add(aid)
                misses += 1
    return {
        "stored_lost": len(stored_lost),
        "undelivered": len(undelivered),
        "missed_receipts": misses,
        "alerts_in_window": len(in_window),
        "ids": {"stored_lost": stored_lost[:20], "undelivered": sorted(undelivered)[:20]},
    }


DEMO_RECURRING_KINDS: frozenset[str] = frozenset({"plate"})
"""Kinds whose demo scene raises again after every cooldown.

The plate clip brings the hotlisted car past the camera on every 8 s loop, and the hotlist
rule's cooldown is per plate, so a healthy demo alerts once per cooldown. The other scenes are
conditions that persist across the loop (a flame that keeps burning, a face that keeps walking
the corridor with the presence rule's hysteresis holding, a stall that stays in its zone as one
tracked object): each is one case, raised again only if the condition ends (the tracker loses
the stall for longer than the rules' track gap) — so their recurrence cannot be expected, and
inferring it from two close alerts (e.g. the stall re-tracked after an analysis outage) gave
false "alerts stopped" reports in the 30-minute soak.
"""


def kind_gaps(
    arrivals: Mapping[str, Sequence[float]],
    now: float,
    cooldown_s: Mapping[str, float],
    grace_s: float,
    since: float,
    recurring_kinds: frozenset[str] = DEMO_RECURRING_KINDS,
) -> dict[str, dict[str, Any]]:
    """Cooldown-aware liveness of each alert kind.

    A kind in ``recurring_kinds`` must raise again within ``cooldown + grace`` of its last
    alert (else it is *late*); every kind must have raised at least once within
    ``cooldown + grace`` of ``since`` (else it is *never*).
    """
    out: dict[str, dict[str, Any]] = {}
    for kind, cd in cooldown_s.items():
        ts = sorted(arrivals.get(kind, ()))
        limit = cd + grace_s
        recurring = kind in recurring_kinds
        last = ts[-1] if ts else None
        age = now - (last if last is not None else since)
        out[kind] = {
            "count": len(ts),
            "recurring": recurring,
            "last_age_s": round(age, 1),
            "limit_s": limit,
            "late": bool(recurring and last is not None and age > limit),
            "never": last is None and now - since > limit,
        }
    return out
