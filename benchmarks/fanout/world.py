"""A small citysight world for the fan-out benchmark and the API/WebSocket tests.

Principals of every demo role, alerts of three departments, feed publishing and an
in-thread uvicorn server running the production FastAPI app.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import redis
import uvicorn

from citysight import keys
from citysight.config import CitysightConfig, Scope
from citysight.contracts import Alert, AlertKind, Location, Severity

ALL_SCOPES = [s.value for s in Scope]

ROLES: dict[str, dict[str, Any]] = {
    "admin": {"department": "*", "scopes": ALL_SCOPES},
    "police": {
        "department": "police",
        "scopes": ["alerts:read", "alerts:dispatch", "plates:query", "evidence:unredacted"],
    },
    "enforcement": {"department": "enforcement", "scopes": ["alerts:read", "alerts:dispatch"]},
    "fire": {"department": "fire", "scopes": ["alerts:read", "alerts:dispatch"]},
    "readonly": {"department": "fire", "scopes": ["alerts:read"]},
    "noscope": {"department": "fire", "scopes": []},
}
"""Role → department and scopes (``readonly``: a read-only fire token)."""

DEPT_KIND = {"fire": AlertKind.FIRE, "enforcement": AlertKind.VENDING, "police": AlertKind.PLATE}
DEPT_POS = {"fire": (22.0, 110.0), "enforcement": (22.1, 110.1), "police": (22.2, 110.2)}


def token_of(role: str) -> str:
    """Deterministic test token of a role."""
    return f"tok-{role}-0123456789"


def seed_principals(r: redis.Redis, roles: dict[str, dict[str, Any]] | None = None) -> None:
    """Store every role's principal under the sha256 of its token."""
    for role, p in (roles or ROLES).items():
        rec = {"name": f"{role}-user", "role": role, **p}
        r.hset(
            keys.PRINCIPALS, hashlib.sha256(token_of(role).encode()).hexdigest(), json.dumps(rec)
        )


def world_config() -> CitysightConfig:
    """Config with the three departments (no cameras, rules or tokens needed)."""
    return CitysightConfig.model_validate(
        {"departments": [{"id": d} for d in ("fire", "enforcement", "police")]}
    )


def make_alert(i: int, department: str, *, pad: int = 0, t: float | None = None) -> Alert:
    """Alert number ``i`` of a department (kind, camera and place follow the department)."""
    lat, lon = DEPT_POS[department]
    kind = DEPT_KIND[department]
    return Alert(
        id=f"al_{department}_{i:06d}",
        kind=kind,
        severity=Severity.HIGH if i % 2 else Severity.LOW,
        camera_id=f"cam-{department}",
        location=Location(lat=lat, lon=lon),
        department=department,
        started_at=datetime.fromtimestamp(t if t is not None else time.time() - 3600 + i, UTC),
        plate_text="AB123" if kind is AlertKind.PLATE else None,
        summary="x" * pad,
    )


def publish_alerts(r: redis.Redis, alerts: list[Alert]) -> list[str]:
    """Write feed entries for alerts directly (as the store does), pipelined; returns ids."""
    pipe = r.pipeline(transaction=False)
    for a in alerts:
        pipe.xadd(
            keys.FEED_STREAM,
            {
                "type": "alert",
                "department": a.department,
                "kind": a.kind.value,
                "camera_id": a.camera_id,
                "severity": a.severity.value,
                "lat": repr(a.location.lat),
                "lon": repr(a.location.lon),
                "d": a.model_dump_json(),
            },
        )
    return [x.decode() if isinstance(x, bytes) else x for x in pipe.execute()]


class ServerThread:
    """uvicorn serving an ASGI app on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any, port: int, **config: Any) -> None:
        """Prepare a server (call :meth:`start`)."""
        cfg = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **config
        )
        self.server = uvicorn.Server(cfg)
        self.port = port
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout_s: float = 10.0) -> ServerThread:
        """Start and wait until the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop and join."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
