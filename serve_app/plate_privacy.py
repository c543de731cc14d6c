"""Plate data only for ``plates:query``: alerts lose their plate fields for everyone else.

A plate alert names its plate in ``plate_text``, ``subject`` and ``summary`` (the hotlist
rule writes "hotlist plate X read as Y"). Readers of the owning department, and supervisors
after escalation, see the alert (place, time, severity, state, evidence) but not the plate
unless they hold ``plates:query``, the scope the trajectory route needs: the plate is the
same personal data either way. REST and the WebSocket feed apply the same function.
"""

from __future__ import annotations

import json
from typing import Any, Final

from citysight.config import Scope
from citysight.contracts import AlertKind
from serve_app.auth import Principal

WITHHELD: Final = "[plate withheld]"
"""What replaces a plate in ``subject`` and ``summary`` for callers without the scope."""


def sees_plates(principal: Principal) -> bool:
    """Whether ``principal`` may see plate text (holds ``plates:query``)."""
    return principal.has(Scope.PLATES_QUERY)


def redact_alert(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert JSON (``Alert.to_api()``) without plate data; other alerts unchanged.

    ``plate_text`` becomes ``null``; on plate alerts ``subject`` and ``summary`` (which
    carry the plate) become :data:`WITHHELD` text. Returns a new dict when anything changed.
    """
    if alert.get("kind") != AlertKind.PLATE and alert.get("plate_text") is None:
        return alert
    out = {**alert, "plate_text": None}
    if alert.get("kind") == AlertKind.PLATE:
        out["subject"] = WITHHELD
        out["summary"] = f"plate alert ({WITHHELD}: needs plates:query)"
    return out


def for_principal(alert: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """``alert`` as ``principal`` may see it."""
    return alert if sees_plates(principal) else redact_alert(alert)


def redact_event(event: dict[str, Any], alert_kind: str) -> dict[str, Any]:
    """An alert event without plate data: the rules' own note on a plate alert is its summary."""
    if alert_kind == AlertKind.PLATE and event.get("actor") == "rules" and event.get("note"):
        return {**event, "note": WITHHELD}
    return event


def events_for_principal(
    events: list[dict[str, Any]], alert_kind: str, principal: Principal
) -> list[dict[str, Any]]:
    """An alert's events as ``principal`` may see them."""
    if sees_plates(principal):
        return events
    return [redact_event(e, alert_kind) for e in events]


def carries_plate(alert_json: str) -> bool:
    """Whether an Alert JSON text may hold plate data (cheap test, no parse)."""
    return '"plate_text":null' not in alert_json or '"kind":"plate"' in alert_json


def redact_feed_payload(mtype: str, d: str) -> str:
    """A feed entry's ``d`` JSON without plate data (``alert`` and ``alert_event`` entries).

    Returned unchanged when it carries no plate; ``{}`` when it cannot be checked (never
    passed on unchecked).
    """
    if mtype not in ("alert", "alert_event") or not carries_plate(d):
        return d
    try:
        payload = json.loads(d)
    except ValueError:
        return "{}"
    if not isinstance(payload, dict):
        return "{}"
    if mtype == "alert":
        payload = redact_alert(payload)
    else:
        alert = payload.get("alert")
        if isinstance(alert, dict):
            payload["alert"] = redact_alert(alert)
            if isinstance(payload.get("event"), dict):
                payload["event"] = redact_event(payload["event"], str(alert.get("kind", "")))
    return json.dumps(payload, separators=(",", ":"))
