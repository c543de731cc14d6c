"""What a webhook receives: which alert events, in what JSON, signed how.

A feed message of type ``alert`` (a new alert: its ``raised`` event) or ``alert_event`` (any
later event) becomes one event :func:`event_from_feed`; :func:`matches` applies a webhook's
filters and :func:`payload_for` renders the body for one webhook: plate text withheld unless
the webhook allows it, evidence as links only (never bytes, never internal storage keys).

Signature: ``X-Citysight-Signature: sha256=<hex>`` where ``hex`` is HMAC-SHA256 with the
webhook's secret over ``<timestamp>.<body>`` and ``timestamp`` is ``X-Citysight-Timestamp``
(unix seconds of this attempt); ``X-Citysight-Event-Id`` (also ``Idempotency-Key``) is the
event id ``<alert id>:<event seq>``, the same on every retry and replay.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from citysight.config import WebhookConfig
from serve_app.plate_privacy import redact_alert, redact_event

SCHEMA_VERSION = 1
SIGNATURE_HEADER = "X-Citysight-Signature"
TIMESTAMP_HEADER = "X-Citysight-Timestamp"
EVENT_ID_HEADER = "X-Citysight-Event-Id"
ATTEMPT_HEADER = "X-Citysight-Attempt"

ALERT_FEED_TYPES = frozenset({"alert", "alert_event"})


ACTIONS = frozenset({"report", "feedback", "verified", "reopened", "recheck_failed"})
"""``AlertEvent.action`` values that name the webhook event type themselves."""


def event_type(event: dict[str, Any]) -> str:
    """The webhook event type of an alert event (``raised``, ``reopened``, ``verified``...).

    An event's own action (a field report attached, feedback photos, the camera re-check's
    verdict) names it; otherwise a transition is named after the state it reaches (see
    :func:`transition_type`).
    """
    action = str(event.get("action") or "")
    return action if action in ACTIONS else transition_type(event)


def event_names(event: dict[str, Any]) -> set[str]:
    """Every name a webhook's ``events`` filter matches an event by: its type and its
    transition's (a camera-verified close is both ``verified`` and ``closed``)."""
    return {event_type(event), transition_type(event)}


def transition_type(event: dict[str, Any]) -> str:
    """The name of an event's transition: the state it reaches; ``→ raised`` from a finished
    state is ``reopened``; an event that keeps the state is ``escalated`` when the SLA raised
    it, else ``updated`` (notes and whatever other writers append)."""
    frm, to = event.get("from_state"), str(event.get("to_state") or "")
    if frm is None:
        return "raised"
    if frm == to:
        return "escalated" if event.get("actor") == "sla" else "updated"
    if to == "raised":
        return "reopened"
    return to


def event_from_feed(fields: dict[str, Any]) -> dict[str, Any] | None:
    """``{"event": ..., "alert": ...}`` of one decoded feed message, ``None`` for others.

    Args:
        fields: Feed fields with ``d`` decoded (``type``, ``d``...).
    """
    type_ = fields.get("type")
    d = fields.get("d")
    if type_ not in ALERT_FEED_TYPES or not isinstance(d, dict):
        return None
    if type_ == "alert":
        at = d.get("raised_at") or 0
        when = (
            datetime.fromtimestamp(float(at), UTC).isoformat()
            if at
            else str(d.get("started_at") or "")
        )
        event = {
            "alert_id": d.get("id"), "seq": 0, "from_state": None,
            "to_state": d.get("state", "raised"), "actor": "rules", "at": when,
            "note": d.get("summary", ""), "unit": None, "outcome": None,
        }  # fmt: skip
        return {"event": event, "alert": d}
    ev, alert = d.get("event"), d.get("alert")
    if not isinstance(ev, dict) or not isinstance(alert, dict):
        return None
    return {"event": ev, "alert": alert}


def event_id(event: dict[str, Any]) -> str:
    """Idempotency key of an alert event: ``<alert id>:<seq>`` (unique, stable)."""
    return f"{event.get('alert_id')}:{event.get('seq')}"


def _values(alert: dict[str, Any], field: str) -> list[str]:
    v: Any = alert
    for part in field.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v]
    return [str(v.value if hasattr(v, "value") else v)]


def _any(values: list[str], patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(v, p) for v in values for p in patterns)


def matches(w: WebhookConfig, item: dict[str, Any]) -> bool:
    """Whether webhook ``w`` wants this event (every filter it sets must match)."""
    alert, ev = item["alert"], item["event"]
    if w.events and not event_names(ev) & set(w.events):
        return False
    if w.kinds and alert.get("kind") not in {k.value for k in w.kinds}:
        return False
    if w.departments:
        depts = [str(alert.get("department") or ""), *map(str, alert.get("escalated_to") or [])]
        if not set(depts) & set(w.departments):
            return False
    # 'jurisdiction' today; a hierarchy may add a list of ancestors ('jurisdictions').
    if w.jurisdictions and not _any(
        _values(alert, "jurisdiction") + _values(alert, "jurisdictions"), w.jurisdictions
    ):
        return False
    return all(_any(_values(alert, f), pats) for f, pats in w.match.items())


def _evidence_links(w: WebhookConfig, alert: dict[str, Any]) -> list[dict[str, Any]]:
    base = w.evidence_base_url.rstrip("/")
    aid = alert.get("id")
    out = []
    for i, ref in enumerate(alert.get("evidence") or []):
        if not isinstance(ref, dict):
            continue
        item = str(ref.get("id") or "")
        path = f"/api/alerts/{aid}/evidence" + (f"/{item}" if item else "")
        out.append(
            {
                "index": i,
                "id": item,
                "source": ref.get("source", "snapshot"),
                # The API serves it face-blurred, to a token that may read the alert.
                "url": base + path,
                "media_type": ref.get("media_type", "image/jpeg"),
                "frame_time": ref.get("frame_time", 0.0),
            }
        )
    return out


def payload_for(w: WebhookConfig, item: dict[str, Any], feed_id: str) -> dict[str, Any]:
    """The JSON body webhook ``w`` receives for one event.

    Args:
        w: The webhook.
        item: From :func:`event_from_feed`.
        feed_id: The feed entry id (``ms-seq``): a total order of every event.
    """
    alert, ev = dict(item["alert"]), dict(item["event"])
    if not w.include_plates:
        kind = str(alert.get("kind") or "")
        alert = redact_alert(alert)
        ev = redact_event(ev, kind)
    alert["evidence"] = _evidence_links(w, alert)
    return {
        "schema_version": SCHEMA_VERSION,
        "id": event_id(ev),
        "type": f"alert.{event_type(ev)}",
        "webhook": w.name,
        "feed_id": feed_id,
        "occurred_at": ev.get("at"),
        "event": ev,
        "alert": alert,
    }


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Signature header value: ``sha256=`` + HMAC-SHA256(secret, ``<timestamp>.<body>``)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Receiver side of :func:`sign` (constant-time compare); the docs show the same code."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)
