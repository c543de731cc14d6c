"""A stand-in for the citysight API inside a Playwright browser context.

The map benchmark and the README screenshot need thousands of cameras and hundreds of
alerts without running detectors: every request the page makes is answered here from
generated data (static files from ``serve_app/static/``, ``/api/*`` as JSON, ``/ws`` through
Playwright's WebSocket routing). The real-API path is covered by
``tests/serve_app/map/test_map_browser.py``.
"""

from __future__ import annotations

import json
import math
import mimetypes
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

STATIC = Path(__file__).resolve().parents[2] / "serve_app" / "static"
CENTER = (20.02, 110.33)  # Haikou: the demo's plates are 琼A (Hainan)
KINDS = ["fire", "smoke", "face", "plate", "vending", "camera_offline"]
DEPARTMENT = {
    "fire": "fire",
    "smoke": "fire",
    "face": "police",
    "plate": "police",
    "vending": "enforcement",
    "camera_offline": "operations",
}
SEVERITY = {
    "fire": "critical",
    "smoke": "high",
    "face": "medium",
    "plate": "high",
    "vending": "low",
    "camera_offline": "medium",
}
ADMIN = {
    "name": "duty-officer",
    "role": "admin",
    "department": "*",
    "scopes": ["alerts:read", "alerts:dispatch", "evidence:unredacted", "cameras:write"],
}


def make_cameras(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` cameras scattered over a ~30 km square, denser towards the centre."""
    rng = random.Random(seed)
    cams = []
    for i in range(n):
        r = abs(rng.gauss(0, 0.07))
        a = rng.uniform(0, 6.283)
        lat = CENTER[0] + r * 0.8 * math.sin(a)
        lon = CENTER[1] + r * math.cos(a)
        cams.append(
            {
                "id": f"cam-{i:04d}",
                "name": f"Camera {i:04d}",
                "latitude": round(lat, 6),
                "longitude": round(lon, 6),
                "heading_deg": rng.choice([None, 0, 90, 180, 270]),
                "jurisdiction": rng.choice(["longhua", "meilan", "xiuying", "qiongshan"]),
                "profile": {
                    "analytics_fps": 5,
                    "keyframe_only": i % 3 == 0,
                    "input_width": 640,
                    "input_height": 640,
                },
            }
        )
    return cams


def make_health(cams: list[dict[str, Any]], seed: int = 2) -> list[dict[str, Any]]:
    """Cameras with mostly-running health (a few stalled, offline, failed)."""
    rng = random.Random(seed)
    out = []
    for c in cams:
        s = rng.choices(["running", "stalled", "offline", "failed"], [94, 3, 2, 1])[0]
        out.append(
            {
                **c,
                "health": {
                    "state": s,
                    "last_frame_age_s": rng.uniform(0, 2)
                    if s == "running"
                    else rng.uniform(30, 900),
                    "metrics": {},
                },
            }
        )
    return out


def make_alert(
    i: int,
    cams: list[dict[str, Any]],
    rng: random.Random,
    now: datetime | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """One alert in the API's JSON shape (``Alert.to_api()``)."""
    now = now or datetime.now(UTC)
    cam = rng.choice(cams)
    kind = kind or rng.choice(KINDS)
    started = now - timedelta(seconds=rng.uniform(0, 3600))
    plate = f"琼A·{rng.randint(10000, 99999)}" if kind == "plate" else None
    summary = {
        "fire": "Flames detected",
        "smoke": "Smoke plume",
        "face": "Person in restricted zone",
        "plate": f"Hotlisted plate {plate}",
        "vending": "Street stall in no-vending zone",
        "camera_offline": "Camera stopped sending frames",
    }[kind]
    return {
        "id": f"al_{i:020d}",
        "kind": kind,
        "severity": SEVERITY[kind],
        "camera_id": cam["id"],
        "camera_ids": [cam["id"]],
        "location": {"lat": cam["latitude"], "lon": cam["longitude"]},
        "jurisdiction": cam["jurisdiction"],
        "department": DEPARTMENT[kind],
        "state": rng.choice(["raised", "raised", "assigned", "acknowledged"]),
        "started_at": started.isoformat(),
        "updated_at": started.isoformat(),
        "summary": f"{summary} — {cam['name']}",
        "plate_text": plate,
        "assigned_unit": None,
        "outcome": None,
        "escalated": False,
        "incident_id": None,
        "evidence": [
            {
                "key": f"ev-{i}",
                "media_type": "image/jpeg",
                "frame_time": 0,
                "boxes": [[120, 80, 260, 300]],
                "class_ids": [0],
            }
        ],
    }


@dataclass
class FakeApi:
    """Route handlers for one browser context (sync Playwright API)."""

    cameras: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    me: dict[str, Any] = field(default_factory=lambda: dict(ADMIN))
    snapshot_jpeg: bytes | None = None
    sockets: list[Any] = field(default_factory=list)
    feed_seq: int = 0
    health: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.health = make_health(self.cameras)

    def install(self, context: Any, base_url: str) -> None:
        """Answer every request to ``base_url`` from this object."""
        context.route(f"{base_url}/**", self._http)
        context.route_web_socket(f"{base_url.replace('http', 'ws', 1)}/ws**", self._ws)

    def _http(self, route: Any) -> None:
        url = route.request.url.split("://", 1)[1].split("/", 1)[1]
        path, _, _query = ("/" + url).partition("?")
        if path == "/":
            path = "/static/index.html"
        if path.startswith("/static/"):
            f = STATIC / path.removeprefix("/static/")
            if not f.is_file():
                route.fulfill(status=404, body="not found")
                return
            ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
            route.fulfill(status=200, body=f.read_bytes(), headers={"content-type": ctype})
            return
        body: Any
        if path == "/api/me":
            body = self.me
        elif path == "/api/config/map":
            states = {c["id"]: c["health"]["state"] for c in self.health}
            cams = [{**c, "state": states[c["id"]]} for c in self.cameras]
            body = {"tile_url": None, "overlays": [], "cameras": cams}
        elif path == "/api/cameras":
            body = self.health
        elif path == "/api/alerts":
            body = self.list_alerts(_query)
        elif path == "/api/ws-tickets":
            body = {"ticket": "t"}
        elif path.endswith("/evidence") and self.snapshot_jpeg:
            route.fulfill(
                status=200, body=self.snapshot_jpeg, headers={"content-type": "image/jpeg"}
            )
            return
        elif path.endswith("/events"):
            aid = path.split("/")[3]
            a = next((x for x in self.alerts if x["id"] == aid), None)
            body = (
                []
                if a is None
                else [
                    {
                        "alert_id": aid,
                        "seq": 0,
                        "from_state": None,
                        "to_state": "raised",
                        "actor": "rules",
                        "at": a["started_at"],
                        "note": "",
                    }
                ]
            )
        elif path.startswith("/api/alerts/"):
            aid = path.split("/")[3]
            body = next((x for x in self.alerts if x["id"] == aid), None)
            if body is None:
                route.fulfill(status=404, body='{"detail":"not found"}')
                return
        else:
            route.fulfill(status=404, body='{"detail":"not found"}')
            return
        route.fulfill(
            status=200, body=json.dumps(body), headers={"content-type": "application/json"}
        )

    def list_alerts(self, query: str) -> list[dict[str, Any]]:
        """``GET /api/alerts`` with its filters (``severity``, ``state``, ``limit``, ``before``)."""
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        out = self.alerts
        for field_, key in (("severity", "severity"), ("state", "state")):
            if q.get(key):
                wanted = set(q[key].split(","))
                out = [a for a in out if a[field_] in wanted]
        if q.get("before"):
            ids = [a["id"] for a in out]
            out = out[ids.index(q["before"]) + 1 :] if q["before"] in ids else []
        return out[: int(q.get("limit", 50))]

    def _ws(self, ws: Any) -> None:
        self.sockets.append(ws)

    def push(self, messages: list[dict[str, Any]]) -> None:
        """Send feed messages (each gets a feed id) to every connected page."""
        for m in messages:
            self.feed_seq += 1
            m.setdefault("id", f"{self.feed_seq}-0")
            data = json.dumps(m)
            for ws in self.sockets:
                ws.send(data)
