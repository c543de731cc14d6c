"""City-wide metrics read from the state the workers and consumers keep in Redis.

Every ingress replica renders the same families from the same keys, so a scrape of any
replica is the city-wide view: camera health (``citysight:camera-health``), component
states (``citysight:components``), per-instance snapshots (``citysight:metrics:{role}``,
see :mod:`citysight.metrics`), the dead-letter stream and the rules group's backlog on every
detections shard. A scrape costs two Redis round trips (pipelines) whatever the number of
cameras, and one JSON parse per camera.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from redis.exceptions import RedisError

from citysight import keys
from citysight.contracts import CameraState
from citysight.keys import detections_stream, metrics_key
from citysight.metrics import PRUNE_AFTER_S, STALE_AFTER_S
from serve_app.metrics.exposition import Exposition, escape_label

logger = logging.getLogger(__name__)

COMPONENT_STATES: Final = (
    "starting", "running", "degraded", "stuck", "down", "failed", "stale", "unknown"
)  # fmt: skip
CAMERA_STATES: Final = tuple(s.value for s in CameraState)

# Camera-health metric → (family, type, help). Counters restart from 0 when a reader
# restarts (Prometheus' rate() handles resets).
CAMERA_SERIES: Final = (
    ("frames_in", "citysight_camera_frames_in_total", "counter", "Frames decoded."),
    (
        "frames_out",
        "citysight_camera_frames_out_total",
        "counter",
        "Sampled frames handed to the detectors (analytics_fps).",
    ),
    (
        "drops",
        "citysight_camera_frames_dropped_total",
        "counter",
        "Frames dropped by the mux queue (drop-oldest: inference slower than the camera).",
    ),
    (
        "late",
        "citysight_camera_frames_late_total",
        "counter",
        "Frames whose decode exceeded decode_deadline_ms (skipped).",
    ),
    (
        "frames_analysed",
        "citysight_camera_frames_analysed_total",
        "counter",
        "Frames whose detections were published (analysed); flat while analytics is down.",
    ),
    ("reconnects", "citysight_camera_reconnects_total", "counter", "Source reconnects."),
    ("errors", "citysight_camera_errors_total", "counter", "Decode and read errors."),
    (
        "decode_ms",
        "citysight_camera_decode_ms",
        "gauge",
        "Decode time per frame, milliseconds (moving average, weight 0.1 per frame).",
    ),
)

INFERENCE_COUNTERS: Final = (
    ("batches", "citysight_inference_batches_total", "Batches run by the detectors."),
    ("errors", "citysight_inference_errors_total", "Batches whose inference raised."),
    ("frames_in", "citysight_inference_frames_total", "Frames handed to the detectors."),
    (
        "frames_ok",
        "citysight_inference_frames_analysed_total",
        "Frames every requested detector answered.",
    ),
    (
        "frames_dropped",
        "citysight_inference_frames_dropped_total",
        "Frames handed in but not analysed (backend down, timeout, overload).",
    ),
    (
        "recoveries",
        "citysight_inference_recoveries_total",
        "Reconnections of the Triton client after the server was marked down.",
    ),
    (
        "server_restarts",
        "citysight_inference_server_restarts_total",
        "Triton server restarts seen by the client.",
    ),
    (
        "request_errors",
        "citysight_inference_request_errors_total",
        "Failed Triton requests.",
    ),
)

RULES_COUNTERS: Final = (
    ("processed", "citysight_rules_processed_total", "Detection entries processed."),
    ("alerts", "citysight_rules_alerts_total", "New alerts written."),
    ("plate_reads", "citysight_rules_plate_reads_total", "Plate reads stored."),
    ("failures", "citysight_rules_failures_total", "Entry deliveries that failed."),
    (
        "dead",
        "citysight_rules_dead_lettered_total",
        "Entries moved to the dead-letter stream.",
    ),
    ("claimed", "citysight_rules_claimed_total", "Entries claimed from dead consumers."),
    ("escalated", "citysight_rules_escalated_total", "Alerts escalated after their SLA."),
)


@dataclass
class ShardBacklog:
    """The rules group's position on one detections stream."""

    shard: int
    length: int = 0
    pending: int = 0  # delivered, not acknowledged
    undelivered: int = 0  # after the group's last-delivered id
    oldest_ms: int | None = None  # id time of the oldest entry not yet acknowledged
    group: bool = False  # the group exists on the stream


@dataclass
class FleetState:
    """Everything ``/metrics`` reads from Redis in one scrape."""

    now: float
    redis_ok: bool = True
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    dead_letters: int = 0
    shards: list[ShardBacklog] = field(default_factory=list)
    commands: int = 0  # Redis commands sent by this scrape


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _json_hash(raw: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(raw, dict):
        return out
    for k, v in raw.items():
        try:
            doc = json.loads(v)
        except (TypeError, ValueError):
            logger.debug("unparsable metrics entry %r", k)
            continue
        if isinstance(doc, dict):
            out[_s(k)] = doc
    return out


def read_fleet(r: Any, shards: int) -> FleetState:
    """Read the city-wide state (two pipelined round trips; never raises on Redis errors).

    Args:
        r: A synchronous Redis client.
        shards: Number of detections streams (``services.streams.shards``).
    """
    st = FleetState(now=time.time())
    try:
        pipe = r.pipeline(transaction=False)
        pipe.time()
        pipe.hgetall(keys.CAMERA_HEALTH)
        pipe.hgetall(keys.COMPONENTS)
        for role in keys.METRICS_ROLES:
            pipe.hgetall(metrics_key(role))
        pipe.xlen(keys.DEAD_LETTER_STREAM)
        for s in range(shards):
            stream = detections_stream(s)
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
            pipe.xpending(stream, keys.RULES_GROUP)
        st.commands += len(pipe)
        res = pipe.execute(raise_on_error=False)
    except (RedisError, OSError) as exc:
        logger.warning("metrics: Redis unreadable (%s)", exc)
        st.redis_ok = False
        return st
    if isinstance(res[0], Exception):
        st.redis_ok = False
        return st
    sec, usec = res[0]
    st.now = float(sec) + float(usec) / 1e6  # Redis' clock: stream ids use it too
    st.cameras = _json_hash(res[1])
    st.components = _json_hash(res[2])
    for i, role in enumerate(keys.METRICS_ROLES):
        st.snapshots[role] = _json_hash(res[3 + i])
    dead = res[3 + len(keys.METRICS_ROLES)]
    st.dead_letters = int(dead) if isinstance(dead, int) else 0
    base = 4 + len(keys.METRICS_ROLES)
    after: list[tuple[ShardBacklog, str]] = []
    for s in range(shards):
        length, groups, pending = res[base + 3 * s : base + 3 * s + 3]
        b = ShardBacklog(shard=s, length=length if isinstance(length, int) else 0)
        st.shards.append(b)
        group = None
        if isinstance(groups, list):
            group = next((g for g in groups if _s(g.get("name")) == keys.RULES_GROUP), None)
        if group is None:
            continue
        b.group = True
        b.pending = int(group.get("pending") or 0)
        if isinstance(pending, dict) and pending.get("min"):
            b.oldest_ms = keys.stream_id(pending["min"])[0]
        lag = group.get("lag")
        b.undelivered = int(lag) if lag is not None else 0
        if lag is None or int(lag) > 0:  # lag is unknown after deletions: look
            after.append((b, _s(group.get("last-delivered-id") or "0-0")))
    if after:
        _first_undelivered(r, after, st)
    _prune(r, st)
    return st


def _first_undelivered(r: Any, after: list[tuple[ShardBacklog, str]], st: FleetState) -> None:
    """Fill the age of each shard's first undelivered entry (one more round trip)."""
    try:
        pipe = r.pipeline(transaction=False)
        for b, last in after:
            pipe.xrange(detections_stream(b.shard), min="(" + last, max="+", count=1)
        st.commands += len(pipe)
        res = pipe.execute(raise_on_error=False)
    except (RedisError, OSError) as exc:
        logger.warning("metrics: stream positions unreadable (%s)", exc)
        return
    for (b, _), rows in zip(after, res, strict=True):
        if isinstance(rows, list) and rows:
            ms = keys.stream_id(rows[0][0])[0]
            b.oldest_ms = ms if b.oldest_ms is None else min(b.oldest_ms, ms)
            b.undelivered = max(b.undelivered, 1)


def _prune(r: Any, st: FleetState) -> None:
    """Delete snapshots of instances gone for an hour (restarted processes get new ids)."""
    for role, snaps in st.snapshots.items():
        old = [i for i, s in snaps.items() if st.now - _updated(s) > PRUNE_AFTER_S]
        if old:
            with contextlib.suppress(RedisError, OSError):
                r.hdel(metrics_key(role), *old)


def _updated(doc: dict[str, Any]) -> float:
    v = doc.get("updated_at")
    return float(v) if isinstance(v, int | float) else 0.0


def live_snapshots(st: FleetState, role: str) -> dict[str, dict[str, Any]]:
    """Snapshots of one role updated within :data:`~citysight.metrics.STALE_AFTER_S`."""
    return {
        i: s
        for i, s in sorted(st.snapshots.get(role, {}).items())
        if st.now - _updated(s) <= STALE_AFTER_S
    }


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def render_fleet(exp: Exposition, st: FleetState) -> None:
    """Write the city-wide families (cameras, components, inference, rules, streams)."""
    exp.gauge(
        "citysight_redis_up",
        "Whether this scrape could read citysight's state from Redis (1) or not (0).",
        [({}, 1 if st.redis_ok else 0)],
    )
    _render_cameras(exp, st)
    _render_components(exp, st)
    _render_inference(exp, live_snapshots(st, "inference"))
    _render_rules(exp, st, live_snapshots(st, "rules"))


def _render_cameras(exp: Exposition, st: FleetState) -> None:
    cams = sorted(st.cameras.items())
    # Labels rendered once per camera: a city scrape writes ~15 series per camera.
    label = {cid: f'{{camera="{escape_label(cid)}"' for cid, _ in cams}
    states = {cid: str(doc.get("state", "")) for cid, doc in cams}
    exp.family(
        "citysight_camera_state",
        "gauge",
        "Camera reader state: 1 for the current state, 0 for the others.",
    )
    for cid, _ in cams:
        cur, lab = states[cid], label[cid]
        for s in CAMERA_STATES:
            exp.raw(f'{lab},state="{s}"}}', 1 if cur == s else 0)
    counts = dict.fromkeys(CAMERA_STATES, 0)
    for s in states.values():
        counts[s] = counts.get(s, 0) + 1
    exp.gauge(
        "citysight_cameras",
        "Cameras by reader state.",
        (({"state": s}, n) for s, n in counts.items()),
    )
    for key, name, kind, help_text in CAMERA_SERIES:
        exp.family(name, kind, help_text)
        for cid, doc in cams:
            v = _num((doc.get("metrics") or {}).get(key))
            if v is not None:
                exp.raw(label[cid] + "}", v)
    exp.family(
        "citysight_camera_analysed",
        "gauge",
        "1 while the camera's frames are analysed, 0 while analytics is down for it.",
    )
    for cid, doc in cams:
        if isinstance(doc.get("analysed"), bool):
            exp.raw(label[cid] + "}", 1 if doc["analysed"] else 0)
    exp.family(
        "citysight_camera_last_frame_age_seconds",
        "gauge",
        "Seconds since the camera's last decoded frame, as of its status time.",
    )
    for cid, doc in cams:
        v = _num((doc.get("metrics") or {}).get("last_frame_age_s"))
        if v is not None and v >= 0:
            exp.raw(label[cid] + "}", round(v, 3))
    exp.family(
        "citysight_camera_status_age_seconds",
        "gauge",
        "Seconds since the camera's status was last refreshed by its stream worker "
        "(grows when the worker is gone).",
    )
    for cid, doc in cams:
        at = _num(doc.get("at"))
        if at is not None:
            exp.raw(label[cid] + "}", round(max(0.0, st.now - at), 3))


def _render_components(exp: Exposition, st: FleetState) -> None:
    exp.family(
        "citysight_component_state",
        "gauge",
        "State each component last published (citysight:components; 'stale' when not "
        "refreshed for 60 s): 1 for the current state, 0 for the others.",
    )
    ages: list[tuple[dict[str, str], float]] = []
    for name, doc in sorted(st.components.items()):
        state = str(doc.get("state", "unknown"))
        at = _num(doc.get("updated_at"))
        if at is not None:
            age = max(0.0, st.now - at)
            ages.append(({"component": name}, round(age, 3)))
            if age > STALE_AFTER_S:
                state = "stale"
        for s in dict.fromkeys((*COMPONENT_STATES, state)):
            exp.sample(1 if s == state else 0, {"component": name, "state": s})
    exp.gauge(
        "citysight_component_status_age_seconds",
        "Seconds since each component last published its state.",
        ages,
    )


def _render_inference(exp: Exposition, snaps: dict[str, dict[str, Any]]) -> None:
    exp.gauge(
        "citysight_inference_up",
        "Whether each stream worker's detectors are ready (1) or down (0).",
        (
            ({"instance": i, "backend": str(s.get("backend", "unknown"))}, 1 if s.get("up") else 0)
            for i, s in snaps.items()
        ),
    )
    for key, name, help_text in INFERENCE_COUNTERS:
        exp.counter(name, help_text, _per_instance(snaps, key))
    exp.family(
        "citysight_inference_batch_ms",
        "histogram",
        "Time to run one batch through the detectors, milliseconds.",
    )
    for i, s in snaps.items():
        h = s.get("batch_ms")
        if isinstance(h, dict) and isinstance(h.get("counts"), list):
            exp.histogram_samples(
                {"instance": i}, h.get("buckets") or [], h["counts"], float(h.get("sum") or 0)
            )


def _per_instance(
    snaps: dict[str, dict[str, Any]], key: str, label: str = "instance"
) -> Iterable[tuple[dict[str, str], float]]:
    for i, s in snaps.items():
        v = _num(s.get(key))
        if v is not None:
            yield {label: i}, v


def _render_rules(exp: Exposition, st: FleetState, snaps: dict[str, dict[str, Any]]) -> None:
    for key, name, help_text in RULES_COUNTERS:
        exp.counter(name, help_text, _per_instance(snaps, key, "consumer"))
    exp.gauge(
        "citysight_rules_lag_ms",
        "Detection published → processed, milliseconds, of each consumer's latest batch "
        "(stays put when a consumer stops: see citysight_rules_backlog_age_seconds).",
        _per_instance(snaps, "lag_ms", "consumer"),
    )
    backlog = [b for b in st.shards if b.group]
    exp.gauge(
        "citysight_detections_stream_entries",
        "Entries on each detections stream (trimmed by age once acknowledged).",
        (({"shard": str(b.shard)}, b.length) for b in st.shards),
    )
    exp.gauge(
        "citysight_rules_backlog_entries",
        "Detection entries the rules group has not acknowledged yet (pending + undelivered).",
        (({"shard": str(b.shard)}, b.pending + b.undelivered) for b in backlog),
    )
    exp.gauge(
        "citysight_rules_pending_entries",
        "Detection entries delivered to a rules consumer and not acknowledged.",
        (({"shard": str(b.shard)}, b.pending) for b in backlog),
    )
    exp.gauge(
        "citysight_rules_backlog_age_seconds",
        "Age of the oldest detection entry not yet acknowledged by the rules group "
        "(0 when none): how far alerting runs behind, and it keeps growing when stuck.",
        (
            (
                {"shard": str(b.shard)},
                round(max(0.0, st.now - b.oldest_ms / 1000), 3) if b.oldest_ms else 0,
            )
            for b in backlog
        ),
    )
    exp.gauge(
        "citysight_dead_letter_entries",
        "Entries on the dead-letter stream citysight:detections:dead.",
        [({}, st.dead_letters)],
    )
