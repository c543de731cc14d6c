"""``GET /health``: each component's real state and an overall status.

Anyone gets the overall status (probes, load balancers); the per-component detail needs a
local caller or a token with ``monitoring:read`` (see :func:`health`).

Semantics (docs/architecture.md, "Health"):

* A component is ok only when its state is ``running``; any other state (``starting``,
  ``degraded``, ``stuck``, ``down``, ``failed``, ``stale``, ``unknown``...) is not.
* Components come from ``citysight:components``. A field ``name:part`` (one per worker or
  consumer) is one part of component ``name``: the component takes its worst part's state,
  so one healthy part never hides a broken one. A part silent for ``PART_EXPIRE_S`` is
  removed (its process was replaced); a component silent for ``STALE_AFTER_S`` is ``stale``.
* ``cameras`` is derived from ``citysight:camera-health`` for the enabled cameras of the
  registry: ``running`` when every camera's reader runs and its frames are analysed.
* ``webhooks`` (only when webhooks are configured) is written by the delivery service
  (``serve_app/webhooks``): ``degraded`` while a receiver fails or after a dead-letter,
  ``stuck`` when a failing receiver's oldest event waited over 5 minutes; ``unknown`` until
  the service first reports, ``stale`` when it stopped.
* ``redaction`` is the face redaction of evidence shown without ``evidence:unredacted``:
  ``failed`` when no face detector tier loads (redacted views answer 503).
* ``status`` is ``ok`` when every component is ``running``; ``down`` (HTTP 503) when Redis
  is unreachable or no detections flow at all while cameras should be running (no enabled
  camera is analysed, and at least one is known not analysed, offline, failed or silent, or
  inference is down); ``degraded`` otherwise.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from citysight import keys
from serve_app.api.deps import ctx
from serve_app.auth import monitoring_denial

router = APIRouter(tags=["health"])

COMPONENTS = (
    "redis", "ray", "rules", "inference", "streams", "ingress", "cameras", "redaction",
    "audit",
)  # fmt: skip
STALE_AFTER_S = 60.0
PART_EXPIRE_S = 300.0
CAMERA_STALE_S = 30.0
"""A camera whose health was not refreshed for this long (its worker died) is unknown."""
_RANK = {"running": 0, "starting": 1, "unknown": 2, "stale": 2, "degraded": 3, "stuck": 4}
_SUMMED = ("frames_ok", "frames_dropped", "processed", "alerts", "dead", "failures")


def _rank(state: Any) -> int:
    return _RANK.get(str(state), 5)  # failed, down and anything unknown rank worst


def _ray_state() -> dict[str, Any] | None:
    ray = sys.modules.get("ray")
    if ray is None:
        return None
    try:
        if ray.is_initialized():
            return {"state": "running", "detail": {}}
    except Exception:  # an odd Ray state must not break health
        return None
    return None


def _entry(value: Any, now: float) -> tuple[dict[str, Any], float | None]:
    """One component record and its age (``None`` when it has no ``updated_at``)."""
    try:
        entry = json.loads(value)
        if not isinstance(entry, dict):
            raise ValueError("not an object")
    except ValueError:
        return {"state": "unknown", "detail": {"error": "malformed"}}, None
    updated = entry.get("updated_at")
    age = now - updated if isinstance(updated, int | float) else None
    if age is not None and age > STALE_AFTER_S:
        entry = {**entry, "state": "stale", "reported_state": entry.get("state")}
    return entry, age


def _merge(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One component from its parts, listed, with counters summed.

    Its state is the worst part's; when only some parts are ``down``/``failed``/``stuck``,
    the component is ``degraded`` (the others still do the job).
    """
    worst = max(parts.values(), key=lambda e: _rank(e.get("state")))
    detail: dict[str, Any] = {"parts": parts}
    for k in _SUMMED:
        vals = [
            p["detail"][k]
            for p in parts.values()
            if isinstance(p.get("detail"), dict)
            and isinstance(p["detail"].get(k), int | float)
            and not isinstance(p["detail"].get(k), bool)
        ]
        if vals:
            detail[k] = sum(vals)
    state = str(worst.get("state", "unknown"))
    if _rank(state) > _RANK["degraded"] and any(p.get("state") != state for p in parts.values()):
        state = "degraded"  # some parts are still doing their job
    return {"state": state, "detail": detail}


def read_components(r: Any, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Components recorded in ``citysight:components``, parts merged (see the module doc).

    Raises:
        redis.RedisError: Redis is unreachable.
    """
    now = time.time() if now is None else now
    whole: dict[str, dict[str, Any]] = {}
    parts: dict[str, dict[str, dict[str, Any]]] = {}
    expired: list[str] = []
    for name, value in r.hgetall(keys.COMPONENTS).items():
        field = keys.text(name) or ""
        entry, age = _entry(value, now)
        base, sep, part = field.partition(":")
        if not sep:
            whole[field] = entry
        elif age is not None and age > PART_EXPIRE_S:
            expired.append(field)
        else:
            parts.setdefault(base, {})[part] = entry
    if expired:
        r.hdel(keys.COMPONENTS, *expired)
    for base, ps in parts.items():
        if base in whole:
            ps = {"": whole[base], **ps}
        whole[base] = ps[next(iter(ps))] if len(ps) == 1 else _merge(ps)
    return whole


def cameras_component(r: Any, now: float | None = None) -> tuple[dict[str, Any], bool, bool]:
    """The ``cameras`` component, whether detections flow, and whether cameras are starting.

    Only enabled cameras of the registry count (a deleted camera's leftover health does not).

    Returns:
        ``(component, flowing, starting)``: ``flowing`` when at least one camera's frames are
        analysed; ``starting`` when no camera is known to be failing (every camera not
        analysed is starting, waits for its first analysed frame, or was never reported).
    """
    now = time.time() if now is None else now
    enabled: set[str] = set()
    for cid, raw in r.hgetall(keys.CAMERAS).items():
        try:
            cfg = json.loads(raw)
        except ValueError:
            continue
        if isinstance(cfg, dict) and cfg.get("enabled", True):
            enabled.add(keys.text(cid) or "")
    health: dict[str, dict[str, Any]] = {}
    ids = sorted(enabled)
    for cid, raw in zip(ids, r.hmget(keys.CAMERA_HEALTH, ids) if ids else [], strict=True):
        if raw is None:
            continue
        try:
            st = json.loads(raw)
        except ValueError:
            continue
        if isinstance(st, dict):
            health[cid] = st
    groups: dict[str, list[str]] = {
        "analysed": [], "not_analysed": [], "waiting": [], "starting": [], "offline": [],
        "failed": [], "unknown": [], "unreported": [],
    }  # fmt: skip
    for cid in ids:
        st = health.get(cid)
        if st is None:
            groups["unreported"].append(cid)  # no stream worker ever reported it
        elif now - float(st.get("at") or 0) > CAMERA_STALE_S:
            groups["unknown"].append(cid)
        elif st.get("state") == "starting":
            groups["starting"].append(cid)
        elif st.get("state") in ("offline", "stalled"):
            groups["offline"].append(cid)
        elif st.get("state") in ("failed", "stopped"):
            groups["failed"].append(cid)
        elif st.get("analysed") is True:
            groups["analysed"].append(cid)
        elif st.get("analysed") is False:
            groups["not_analysed"].append(cid)
        else:
            groups["waiting"].append(cid)  # running, first analysed frame not seen yet
    flowing = bool(groups["analysed"])
    # Evidence that analysis stopped; a camera nobody reported yet is no such evidence (the
    # workers are starting, or run elsewhere), but it is not running either.
    bad = [g for g in ("not_analysed", "offline", "failed", "unknown") if groups[g]]
    starting = not bad
    if not enabled or len(groups["analysed"]) == len(enabled):
        state = "running"
    elif bad or groups["unreported"]:
        state = "degraded"
    else:
        state = "starting"
    frames = sum(
        float((st.get("metrics") or {}).get("frames_analysed", 0)) for st in health.values()
    )
    detail = {
        "enabled": len(enabled),
        **{k: v for k, v in groups.items() if v or k == "analysed"},
        "frames_analysed": int(frames),
    }
    return {"state": state, "detail": detail}, flowing, starting


MEMORY_DEGRADED = 0.9
"""Share of ``maxmemory`` in use from which Redis is ``degraded`` (noeviction: writes fail
when it is full)."""


def redis_component(r: Any, ping_s: float) -> dict[str, Any]:
    """The ``redis`` component: ``degraded`` from :data:`MEMORY_DEGRADED` of ``maxmemory``."""
    detail: dict[str, Any] = {"ping_ms": round(ping_s * 1000, 2)}
    mem = r.info("memory")
    used, limit = int(mem.get("used_memory", 0)), int(mem.get("maxmemory", 0))
    detail["used_memory_mb"] = round(used / 2**20, 1)
    detail["maxmemory_mb"] = round(limit / 2**20, 1)
    detail["maxmemory_policy"] = str(mem.get("maxmemory_policy", ""))
    if limit and used >= MEMORY_DEGRADED * limit:
        detail["reason"] = "memory nearly full: writes will be refused (noeviction)"
        return {"state": "degraded", "detail": detail}
    return {"state": "running", "detail": detail}


def audit_component(result: dict[str, Any], interval_s: float = 60.0) -> dict[str, Any]:
    """The ``audit`` component from the replica's last chain verification.

    ``failed`` when the chain is broken or no key is readable (a broken chain is never
    ok), ``unknown`` before the first verification, ``stale`` when the last one could not
    run (Redis unreachable) or is older than :data:`STALE_AFTER_S` past its interval.
    """
    if not result.get("verified_at"):
        return {"state": "unknown", "detail": result}
    if not result.get("ok"):
        return {"state": "failed", "detail": result}
    if result.get("error") or time.time() - result["verified_at"] > interval_s + STALE_AFTER_S:
        return {"state": "stale", "detail": result}
    return {"state": "running", "detail": result}


@router.get("/health", summary="Component states and overall status")
def health(request: Request) -> JSONResponse:
    """200 with every component's state; 503 when the status is ``down``.

    The component detail (internal addresses, model files, camera placement) goes only to
    local callers (``services.http.local_monitoring``) and tokens with ``monitoring:read``;
    anyone else gets the minimal liveness form ``{"status": ...}`` with the same code, which
    is all a load balancer or probe needs.
    """
    c = ctx(request)
    detail = monitoring_denial(request) is None
    comps: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    flowing = starting = True
    enabled = 0
    try:
        c.redis.ping()
        comps["redis"] = redis_component(c.redis, time.perf_counter() - t0)
        comps.update({k: v for k, v in read_components(c.redis).items() if k != "redis"})
        comps["cameras"], flowing, starting = cameras_component(c.redis)
        enabled = int(comps["cameras"]["detail"]["enabled"])
    except (RedisError, OSError) as exc:
        comps["redis"] = {"state": "failed", "detail": {"error": type(exc).__name__}}
    ray_state = _ray_state()
    if ray_state is not None:
        comps["ray"] = ray_state
    hub = c.hub.health()  # feed reader and session re-check: degraded while they fail
    comps["ingress"] = {"state": hub.pop("state"), "detail": hub}
    comps["audit"] = audit_component(c.metrics.audit, c.cfg.audit.verify_interval_s)
    # Face redaction of evidence (fail closed): ``failed`` when no face detector loads, so
    # redacted images are refused with 503 rather than served with faces in them.
    comps["redaction"] = c.evidence.redactor.status()
    for name in COMPONENTS:
        comps.setdefault(name, {"state": "unknown", "detail": {}})
    if any(w.enabled for w in c.cfg.webhooks):
        comps.setdefault("webhooks", {"state": "unknown", "detail": {}})
    else:
        comps.pop("webhooks", None)  # left by an earlier config with webhooks
    inference_down = comps["inference"].get("state") == "down"
    no_detections = enabled > 0 and not flowing and (not starting or inference_down)
    if comps["redis"]["state"] != "running" or no_detections:
        overall = "down"
    elif all(v.get("state") == "running" for v in comps.values()):
        overall = "ok"
    else:
        overall = "degraded"
    code = 503 if overall == "down" else 200
    if not detail:
        return JSONResponse({"status": overall}, status_code=code)
    return JSONResponse({"status": overall, "components": comps}, status_code=code)
