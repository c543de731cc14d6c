"""The ``citysight:feed`` stream: every message the WebSocket delivers, in order."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis

from citysight.keys import FEED_STREAM, text


def publish_feed(
    pipe: Any,
    *,
    type: str,
    payload: dict[str, Any],
    department: str,
    kind: str,
    camera_id: str,
    severity: str,
    lat: float,
    lon: float,
    departments: list[str] | None = None,
    jurisdictions: list[str] | None = None,
) -> None:
    """Queue one feed message on a pipeline (or client).

    Args:
        pipe: A redis pipeline (preferably the one writing the state change) or client.
        type: ``alert``, ``alert_event``, ``camera_status`` or ``camera_removed``.
        payload: JSON-serialisable body, stored in field ``d``.
        department: Department the message belongs to (scope filter): the alert's owner.
        kind: Alert kind.
        camera_id: Camera of the message.
        severity: Severity value.
        lat: Latitude for bounding-box filters.
        lon: Longitude for bounding-box filters.
        departments: Every department that sees the message when more than ``department``
            (an escalated alert: owner and supervisors), stored comma-separated in field
            ``departments``; subscribers of any of them receive the message once.
        jurisdictions: The jurisdiction path of the message (city first), stored
            comma-separated in field ``jurisdictions``: jurisdiction-scoped subscribers get
            only messages whose path holds their jurisdiction (none without the field).
    """
    fields = {
        "type": type,
        "department": department,
        "kind": kind,
        "camera_id": camera_id,
        "severity": severity,
        "lat": repr(float(lat)),
        "lon": repr(float(lon)),
        "d": json.dumps(payload, separators=(",", ":"), default=str),
    }
    if departments and any(d != department for d in departments):
        fields["departments"] = ",".join(departments)
    if jurisdictions:
        fields["jurisdictions"] = ",".join(jurisdictions)
    pipe.xadd(FEED_STREAM, fields)


def _decode_fields(fields: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {text(k) or "": text(v) for k, v in fields.items()}
    if out.get("d") is not None:
        out["d"] = json.loads(out["d"])
    return out


def read_feed(r: redis.Redis, after_id: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    """Feed messages strictly after ``after_id``, oldest first.

    Args:
        r: Redis client.
        after_id: Stream id last seen; ``"0"``, ``"-"`` or ``""`` read from the start.
        count: Maximum number of messages.

    Returns:
        ``(id, fields)`` pairs; ``fields["d"]`` is the decoded JSON payload, other fields
        are strings.
    """
    start = "-" if after_id in ("", "0", "-", "0-0") else f"({after_id}"
    rows = cast(  # XRANGE reply of a synchronous client (bytes or str per decode_responses)
        "list[tuple[bytes | str, dict[bytes | str, bytes | str]]]",
        r.xrange(FEED_STREAM, min=start, max="+", count=count),
    )
    return [(text(i) or "", _decode_fields(f)) for i, f in rows]


def trim_feed(r: redis.Redis, max_age_s: float, now: float | None = None) -> int:
    """Drop feed messages older than ``max_age_s`` (by ``MINID``, never a bare ``MAXLEN``)."""
    cutoff_ms = int(((now or time.time()) - max_age_s) * 1000)
    return int(r.xtrim(FEED_STREAM, minid=f"{max(cutoff_ms, 0)}-0", approximate=True))
