"""The Redis layout: every key name, key builder and consumer group, spelled once.

Every layer reads and writes Redis through these names (the table with types, writers and
contents is ``serve_app/INTERFACES.md``). Also here: the parser of stream entry ids and
:func:`text` for reply values, which every Redis reader needs.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "citysight:"

# -- streams ---------------------------------------------------------------------------

DETECTIONS_STREAM_PREFIX: Final = "citysight:detections:"
"""``citysight:detections:{shard}``: ``FrameResult`` msgpack in field ``d`` (stream workers)."""
DEAD_LETTER_STREAM: Final = "citysight:detections:dead"
CAMERA_STATUS_STREAM: Final = "citysight:camera-status"
FEED_STREAM: Final = "citysight:feed"
"""Every message the WebSocket delivers, in order (the ids are what clients resume from)."""
AUDIT_STREAM: Final = "citysight:audit"
CLIP_REQUESTS_PREFIX: Final = "citysight:clip-requests:"
"""``citysight:clip-requests:{camera_id}``: clip requests of one camera (rules consumers write,
the stream worker reading that camera consumes them in group :data:`CLIPS_GROUP`)."""
CLIPS_GROUP: Final = "clips"
CLIPS_EXPIRY: Final = "citysight:clips:expiry"
"""Sorted set: alert id → when its clip files expire (unix s); swept by the stream workers."""
RULES_GROUP: Final = "rules"
"""Consumer group of the rules consumers on the detections and camera-status streams."""

# -- hashes, sets and strings -----------------------------------------------------------

ALERTS_ALL: Final = "citysight:alerts:all"
AUDIT_HEAD: Final = "citysight:audit:head"
AUDIT_ANCHOR: Final = "citysight:audit:anchor"
"""String: keyed JSON naming the first audit record left after the last retention trim."""
CAMERAS: Final = "citysight:cameras"
"""Hash: camera id → ``CameraConfig`` JSON (the camera registry)."""
CAMERAS_CHANGED: Final = "citysight:cameras:changed"
"""Pub/sub channel: a camera id whose registry entry changed."""
CAMERA_HEALTH: Final = "citysight:camera-health"
COMPONENTS: Final = "citysight:components"
RULES_CONSUMERS: Final = "citysight:components:rules"
"""Hash: rules consumer name → its own status (``rules`` in COMPONENTS is their summary)."""
RULES_COOLDOWN: Final = "citysight:rules:cooldown"
ANALYTICS_DOWN: Final = "citysight:analytics-down"
"""Hash: camera id → ``{"ids": [open analytics_down alert ids], "since": unix}``."""
PRINCIPALS: Final = "citysight:principals"
"""Hash: sha256 hex of a bearer token → principal JSON (tokens themselves are never stored)."""
WS_TICKET_PREFIX: Final = "citysight:ws-ticket:"
METRICS_PREFIX: Final = "citysight:metrics:"
METRICS_ROLES: Final = ("inference", "rules", "ingress")


def detections_stream(shard: int) -> str:
    """Name of the Redis Stream that carries frame results of one shard."""
    return f"{DETECTIONS_STREAM_PREFIX}{shard}"


def snapshot_key(camera_id: str, frame_no: int) -> str:
    """String key of a short-lived JPEG of one frame (``FrameResult.snapshot_key``)."""
    return f"citysight:snap:{camera_id}:{frame_no}"


def ws_ticket_key(ticket: str) -> str:
    """String key of a one-time WebSocket ticket (principal JSON, consumed with GETDEL)."""
    return WS_TICKET_PREFIX + ticket


def ws_sessions_key(token_key: str) -> str:
    """Sorted set of one principal's open WebSockets (member = session id, score = last
    seen, ms): what ``services.http.ws_max_per_principal`` counts, across replicas."""
    return f"citysight:ws-sessions:{token_key}"


def live_interest_key(camera_id: str) -> str:
    """String with a TTL: someone watches the camera live (refreshed by the ingress while a
    viewer is open); stream workers publish the camera's packets only while it exists."""
    return f"citysight:live:{camera_id}:interest"


def live_packets_key(camera_id: str) -> str:
    """Capped stream of a camera's compressed packets for live viewers (stream workers;
    fields ``v`` data, ``p``/``d`` pts/dts at 90 kHz, ``k`` keyframe, ``w`` demux wall time,
    ``i`` stream info JSON on keyframes, ``x`` a reason live view is unavailable)."""
    return f"citysight:live:{camera_id}:packets"


def live_viewers_key(camera_id: str) -> str:
    """Sorted set of a camera's open live viewers across replicas (member = session id,
    score = last seen, ms): what ``services.live.max_viewers_per_camera`` counts."""
    return f"citysight:live:{camera_id}:viewers"


def metrics_key(role: str) -> str:
    """Hash holding the metric snapshots of one role's instances.

    Raises:
        ValueError: ``role`` is not one of :data:`METRICS_ROLES`.
    """
    if role not in METRICS_ROLES:
        raise ValueError(f"unknown metrics role {role!r}; known: {', '.join(METRICS_ROLES)}")
    return METRICS_PREFIX + role


def alert_key(alert_id: str) -> str:
    """String key holding one alert's JSON."""
    return f"citysight:alert:{alert_id}"


def events_key(alert_id: str) -> str:
    """List key holding one alert's append-only events."""
    return f"citysight:alert:{alert_id}:events"


def dept_index(department: str) -> str:
    """Sorted set of one department's alert ids (score = started_at)."""
    return f"citysight:alerts:dept:{department}"


def jurisdiction_index(jurisdiction: str) -> str:
    """Sorted set of the alert ids in one jurisdiction or below it (score = started_at).

    Written for every configured area on an alert's ``jurisdiction_path`` when it is raised
    (a jurisdiction never changes afterwards).
    """
    return f"citysight:alerts:jurisdiction:{jurisdiction}"


def camera_system_alerts_key(camera_id: str) -> str:
    """Set of the ids of a camera's open system alerts (``camera_offline``...), to resolve them."""
    return f"citysight:camera:{camera_id}:system-alerts"


def incident_key(incident_id: str) -> str:
    """Sorted set of the alert ids of one cross-camera incident (score = started_at)."""
    return f"citysight:incident:{incident_id}"


def incident_index_keys(kind: str) -> list[str]:
    """Keys of one alert kind's open incidents (see ``serve_app/rules/incidents.py``).

    GEO set of incidents at their first location, zset of their latest alert time, hash of
    their state, hash of the incident given to each alert id (replay memo).
    """
    base = f"citysight:incidents:{kind}"
    return [f"{base}:geo", f"{base}:last", f"{base}:state", f"{base}:alerts"]


def evidence_key(alert_id: str) -> str:
    """String key holding an alert's JPEG snapshot."""
    return f"citysight:evidence:{alert_id}"


def evidence_item_key(alert_id: str, item_id: str) -> str:
    """String key of one further evidence item of an alert (report or feedback photo, the
    snapshot of a camera re-check); same retention as the snapshot."""
    return f"citysight:evidence:{alert_id}:{item_id}"


def reports_by_reporter_key(principal: str) -> str:
    """Sorted set of the alert ids a principal reported or added a report to (score = time)."""
    return f"citysight:reports:by:{principal}"


RECHECK_WATCHES: Final = "citysight:recheck:watches"
"""Sorted set: ids of resolved alerts the camera re-check still has to look at (score =
resolved time). Written with the transition, so no resolution is missed while a rules
consumer restarts; the consumer owning the alert's camera removes the id when it is done."""


def redacted_evidence_key(alert_id: str, fingerprint: str) -> str:
    """The redacted rendering of an alert's evidence (expires with the original)."""
    return f"citysight:evidence-redacted:{alert_id}:{fingerprint}"


def clip_requests_stream(camera_id: str) -> str:
    """Stream of the clip requests of one camera (see :data:`CLIP_REQUESTS_PREFIX`)."""
    return CLIP_REQUESTS_PREFIX + camera_id


def clip_key(alert_id: str) -> str:
    """Hash of an alert's clip record: state, reason, sha256, duration, frames, size..."""
    return f"citysight:clip:{alert_id}"


def clip_render_lock(alert_id: str, fingerprint: str) -> str:
    """String key held by the ingress replica rendering a face-blurred copy of a clip."""
    return f"citysight:clip:{alert_id}:render:{fingerprint}"


def plates_key(plate: str) -> str:
    """Sorted set of reads of one plate (score = read time)."""
    return f"citysight:plates:{plate}"


WEBHOOKS_GROUP: Final = "webhooks"
"""Consumer group of the webhook fan-out on the feed stream (its position survives restarts)."""
WEBHOOKS_LEASE: Final = "citysight:webhooks:lease"
"""String: the instance that delivers webhooks now (one at a time, renewed; expires)."""
WEBHOOKS_PREFIX: Final = "citysight:webhooks:"
WEBHOOKS_FANOUT: Final = "citysight:webhooks:fanout"
"""Hash: fan-out counters (``feed_lost``: feed entries trimmed before the fan-out read them)."""


def webhook_outbox(name: str) -> str:
    """Stream of one webhook's undelivered events, oldest first (delivered ones are deleted)."""
    return f"{WEBHOOKS_PREFIX}{name}:outbox"


def webhook_dead(name: str) -> str:
    """Stream of one webhook's dead-lettered events (inspect and replay with the CLI)."""
    return f"{WEBHOOKS_PREFIX}{name}:dead"


def webhook_stats(name: str) -> str:
    """Hash of one webhook's delivery counters and last success/error (metrics, health)."""
    return f"{WEBHOOKS_PREFIX}{name}:stats"


# -- replies -----------------------------------------------------------------------------

StreamId = tuple[int, int]


def stream_id(entry_id: bytes | str) -> StreamId:
    """A stream entry id ``"ms-seq"`` as a comparable ``(ms, seq)`` tuple (``"ms"``: seq 0).

    Raises:
        ValueError: Not a stream id.
    """
    text_ = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text_.partition("-")
    return int(ms), int(seq or 0)


#: Key the cluster harness writes through Sentinel while it fails the primary over.
CLUSTER_FAILOVER_PROBE = "citysight:cluster:failover-probe"


def text(value: bytes | str | None) -> str | None:
    """Decode a Redis reply value (works with and without ``decode_responses``)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value
