"""``GET /health``: each component's state and an overall status (no auth: probes)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from serve_app.api.deps import ctx

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

COMPONENTS_KEY = "citysight:components"
COMPONENTS = ("redis", "ray", "rules", "inference", "streams", "ingress")
STALE_AFTER_S = 60.0


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


@router.get("/health", summary="Component states and overall status")
def health(request: Request) -> JSONResponse:
    """200 with every component's state; 503 only when Redis is unreachable."""
    c = ctx(request)
    comps: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    try:
        c.redis.ping()
        comps["redis"] = {
            "state": "running",
            "detail": {"ping_ms": round((time.perf_counter() - t0) * 1000, 2)},
        }
        raw = c.redis.hgetall(COMPONENTS_KEY)
    except (RedisError, OSError) as exc:
        comps["redis"] = {"state": "failed", "detail": {"error": type(exc).__name__}}
        raw = {}
    now = time.time()
    for name, value in raw.items():
        key = name.decode() if isinstance(name, bytes) else str(name)
        try:
            entry = json.loads(value)
        except ValueError:
            entry = {"state": "unknown", "detail": {"error": "malformed"}}
        updated = entry.get("updated_at")
        if isinstance(updated, int | float) and now - updated > STALE_AFTER_S:
            entry = {**entry, "state": "stale"}
        comps.setdefault(key, entry)
    ray_state = _ray_state()
    if ray_state is not None:
        comps["ray"] = ray_state
    comps["ingress"] = {
        "state": "running",
        "detail": {"ws_clients": c.metrics.ws_clients, "feed_last_id": c.hub.last_id},
    }
    for name in COMPONENTS:
        comps.setdefault(name, {"state": "unknown", "detail": {}})
    states = {v.get("state") for v in comps.values()}
    if comps["redis"]["state"] != "running":
        overall = "down"
    elif states <= {"running"}:
        overall = "ok"
    else:
        overall = "degraded"
    code = 503 if overall == "down" else 200
    return JSONResponse({"status": overall, "components": comps}, status_code=code)
