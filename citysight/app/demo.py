"""The demo: a small synthetic city that raises every alert kind within two minutes.

Five cameras around Haikou replay synthetic clips rendered on first start (see
``streams.synthetic``): a car with the hotlisted plate 琼A12345, a face in a restricted
corridor, a flame, a smoke plume, and a street stall that settles in a no-vending zone.
The clips are synthetic; evaluation on real footage is ``citysight eval``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from citysight.config import CitysightConfig, parse_config
from citysight.rulesets import demo_rules
from citysight.urls import DEFAULT_ALLOWED_NETWORKS, DEFAULT_CAMERA_PORTS

DEMO_ROLES = ("ADMIN", "POLICE", "ENFORCEMENT", "FIRE", "DUTY", "GRID", "TOWNSHIP")

DEMO_WEBHOOK_URL_ENV = "CITYSIGHT_DEMO_WEBHOOK_URL"
DEMO_WEBHOOK_SECRET_ENV = "CITYSIGHT_DEMO_WEBHOOK_SECRET"
"""Opt-in demo webhook: its URL (e.g. ``citysight webhooks receive``'s) and signing secret."""

DEMO_RTSP_PORTS = (8554, 8599)
"""Ports of 127.0.0.1 the demo's camera allow-list opens (a local RTSP test server)."""

# (camera id, scene, name, lat, lon, jurisdiction, detectors). The jurisdiction column is
# the township the camera lies in; the demo config leaves it out and the cameras are placed
# in their grid by position (DEMO_JURISDICTIONS).
_CAMERAS: list[tuple[str, str, str, float, float, str, list[str]]] = [
    ("cam-plate-01", "plate", "Binhai Ave / Longkun Rd", 20.0312, 110.3210, "longhua", ["plate"]),
    ("cam-face-01", "face", "City hall, service corridor", 20.0265, 110.3305, "longhua", ["face"]),
    ("cam-fire-01", "fire", "Old town warehouse row", 20.0456, 110.3420, "meilan", ["fire_smoke"]),
    ("cam-smoke-01", "smoke", "Xiuying port roofs", 20.0180, 110.2870, "xiuying", ["fire_smoke"]),
    ("cam-vending-01", "vending", "Jiefang Rd pavement", 20.0395, 110.3380, "meilan", ["vending"]),
]


def _box(lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [ring]}


# Synthetic polygons drawn around the demo cameras: a city, three townships and four grids
# (a Qionghai-like hierarchy in miniature). They are NOT real administrative boundaries.
DEMO_JURISDICTIONS: tuple[dict[str, Any], ...] = (
    {"id": "haikou", "name": "Haikou (demo)", "level": "city",
     "geometry": _box(110.25, 19.98, 110.40, 20.08)},
    {"id": "xiuying", "name": "Xiuying (synthetic)", "level": "township", "parent": "haikou",
     "geometry": _box(110.25, 19.98, 110.305, 20.08)},
    {"id": "longhua", "name": "Longhua (synthetic)", "level": "township", "parent": "haikou",
     "geometry": _box(110.305, 19.98, 110.335, 20.035)},
    {"id": "meilan", "name": "Meilan (synthetic)", "level": "township", "parent": "haikou",
     "geometry": {"type": "Polygon", "coordinates": [[
         [110.305, 20.035], [110.335, 20.035], [110.335, 19.98], [110.40, 19.98],
         [110.40, 20.08], [110.305, 20.08], [110.305, 20.035]]]}},
    {"id": "longhua-g1", "name": "Longhua grid 1 (synthetic)", "level": "grid",
     "parent": "longhua", "geometry": _box(110.305, 19.98, 110.325, 20.035)},
    {"id": "longhua-g2", "name": "Longhua grid 2 (synthetic)", "level": "grid",
     "parent": "longhua", "geometry": _box(110.325, 19.98, 110.335, 20.035)},
    {"id": "meilan-g1", "name": "Meilan grid 1 (synthetic)", "level": "grid",
     "parent": "meilan", "geometry": _box(110.335, 19.98, 110.34, 20.08)},
    {"id": "meilan-g2", "name": "Meilan grid 2 (synthetic)", "level": "grid",
     "parent": "meilan", "geometry": _box(110.34, 19.98, 110.40, 20.08)},
)  # fmt: skip
DEMO_TOWNSHIP = "meilan"
"""Jurisdiction of the demo's township token (the fire and vending cameras lie in it)."""


# The reference city's departments and routing (also used by the city simulation).
DEMO_DEPARTMENTS: tuple[dict[str, Any], ...] = (
    {"id": "duty", "name": "Duty supervisors", "names": {"zh-CN": "值班长"}, "ack_sla_s": 600},
    {
        "id": "police",
        "name": "Traffic police",
        "names": {"zh-CN": "交警"},
        "supervisor": "duty",
        "ack_sla_s": 300,
    },
    {
        "id": "enforcement",
        "name": "City enforcement",
        "names": {"zh-CN": "城管执法"},
        "supervisor": "duty",
        "ack_sla_s": 900,
    },
    {
        "id": "fire",
        "name": "Fire and emergency",
        "names": {"zh-CN": "消防救援"},
        "supervisor": "duty",
        "ack_sla_s": 120,
    },
)
DEMO_ROUTING: tuple[dict[str, Any], ...] = (
    {"kind": "fire", "department": "fire"},
    {"kind": "smoke", "department": "fire"},
    {"kind": "vending", "department": "enforcement"},
    {"kind": "plate", "department": "police"},
    {"kind": "face", "department": "police"},
    {"kind": "camera_offline", "department": "duty"},
    {"kind": "analytics_down", "department": "duty"},
    # Field reports only (no camera rule raises these kinds).
    {"kind": "road_damage", "department": "enforcement"},
    {"kind": "other", "department": "duty"},
)


def demo_tokens() -> dict[str, str]:
    """Tokens per demo role: ``CITYSIGHT_DEMO_TOKEN_<ROLE>`` when set, otherwise generated.

    Generated tokens are put into the environment so every component sees the same ones.
    """
    out = {}
    for role in DEMO_ROLES:
        var = f"CITYSIGHT_DEMO_TOKEN_{role}"
        tok = os.environ.get(var) or secrets.token_urlsafe(24)
        os.environ[var] = tok
        out[role.lower()] = tok
    return out


def demo_config_dict(
    clip_dir: Path, *, port: int = 8000, redis_port: int = 6390, workdir: Path = Path(".citysight")
) -> dict[str, Any]:
    """The demo configuration as a plain document (also written as an example file)."""
    from streams.synthetic.clips import VENDING_STALL_REGION

    x1, y1, x2, y2 = VENDING_STALL_REGION
    pad = 0.08
    vx1, vy1 = max(0.0, x1 - pad), max(0.0, y1 - pad)
    vx2, vy2 = min(1.0, x2 + pad), min(1.0, y2 + pad)
    cameras = []
    for cid, scene, name, lat, lon, _township, dets in _CAMERAS:
        cam: dict[str, Any] = {
            "id": cid,
            "name": name,
            "url": str((clip_dir / f"{scene}.mp4").resolve()),
            "latitude": lat,
            "longitude": lon,
            "detectors": dets,
            "profile": {
                "analytics_fps": 2.0,
                "input_width": 960,
                "input_height": 540,
                "loop": True,
                "no_frame_timeout_s": 10.0,
            },
        }
        if scene == "vending":
            cam["zones"] = [
                {
                    "id": "pavement",
                    "type": "no_vending",
                    "polygon": [[vx1, vy1], [vx2, vy1], [vx2, vy2], [vx1, vy2]],
                }
            ]
        if scene == "face":
            cam["zones"] = [
                {
                    "id": "corridor",
                    "type": "restricted",
                    "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
                }
            ]
        cameras.append(cam)
    all_scopes = [
        "alerts:read",
        "alerts:dispatch",
        "cameras:write",
        "rules:write",
        "evidence:unredacted",
        "plates:query",
        "audit:read",
        "monitoring:read",
        "reports:write",
        "video:live",
    ]
    doc: dict[str, Any] = {
        "version": 1,
        "site": {"timezone": "Asia/Shanghai"},  # Haikou: schedules run in China Standard Time
        "ui": {"language": "zh-CN"},  # a Chinese city's operators: the map starts in Chinese
        "cameras": cameras,
        "rules": demo_rules(),
        "plate_hotlist": [
            {"plate": "琼A12345", "reason": "reported stolen (demo)", "severity": "high"}
        ],
        "jurisdictions": {
            "source": "synthetic demo polygons drawn around the demo cameras, not real "
            "administrative boundaries",
            "areas": [dict(a) for a in DEMO_JURISDICTIONS],
        },
        "departments": [dict(d) for d in DEMO_DEPARTMENTS],
        "routing": [dict(r) for r in DEMO_ROUTING],
        "tokens": [
            {
                "name": "admin",
                "role": "admin",
                "department": "*",
                "scopes": all_scopes,
                "token_env": "CITYSIGHT_DEMO_TOKEN_ADMIN",
            },
            {
                "name": "police",
                "role": "police",
                "department": "police",
                "scopes": ["alerts:read", "alerts:dispatch", "plates:query"],
                "token_env": "CITYSIGHT_DEMO_TOKEN_POLICE",
            },
            {
                "name": "enforcement",
                "role": "enforcement",
                "department": "enforcement",
                "scopes": ["alerts:read", "alerts:dispatch"],
                "token_env": "CITYSIGHT_DEMO_TOKEN_ENFORCEMENT",
            },
            {
                "name": "fire",
                "role": "fire",
                "department": "fire",
                "scopes": ["alerts:read", "alerts:dispatch"],
                "token_env": "CITYSIGHT_DEMO_TOKEN_FIRE",
            },
            {
                # Duty supervisors: camera_offline alerts, and every alert escalated to them
                # (the owning department keeps those too).
                "name": "duty",
                "role": "duty",
                "department": "duty",
                # The duty officer re-checks cases on live video.
                "scopes": ["alerts:read", "alerts:dispatch", "video:live"],
                "token_env": "CITYSIGHT_DEMO_TOKEN_DUTY",
            },
            {
                # A grid worker's phone (the /report page at /report): sends field reports
                # and follows their own, sees no department's alerts (no alerts:read).
                "name": "grid-worker",
                "role": "grid",
                "department": "enforcement",
                "scopes": ["reports:write"],
                "token_env": "CITYSIGHT_DEMO_TOKEN_GRID",
            },
            {
                # A township officer: every department's alerts, but only in Meilan
                # (its cameras, evidence, map and statistics too).
                "name": "township",
                "role": "township",
                "department": "*",
                "jurisdiction": DEMO_TOWNSHIP,
                "scopes": ["alerts:read", "alerts:dispatch"],
                "token_env": "CITYSIGHT_DEMO_TOKEN_TOWNSHIP",
            },
        ],
        "services": {
            "redis": {"embedded_port": redis_port, "data_dir": str(workdir / "redis")},
            "ray": {"temp_dir": f"/tmp/citysight-ray-{os.getuid()}"},
            "inference": {"type": "triton", "models_dir": "model_repo/files"},
            "http": {"host": "127.0.0.1", "port": port},
            "streams": {
                "workers": 1,
                "shards": 2,
                # Explicit, so the demo shows what an operator writes: the private camera
                # networks of the default, plus a local RTSP server (the soak test's) on
                # 127.0.0.1 ports 8554-8599 only: never the demo's Redis, API or Ray ports.
                "allowed_networks": [
                    *(
                        {"cidr": n, "ports": list(DEFAULT_CAMERA_PORTS)}
                        for n in DEFAULT_ALLOWED_NETWORKS
                    ),
                    {
                        "cidr": "127.0.0.1/32",
                        "ports": [f"{DEMO_RTSP_PORTS[0]}-{DEMO_RTSP_PORTS[1]}"],
                    },
                ],
            },
        },
    }
    hook_url = os.environ.get(DEMO_WEBHOOK_URL_ENV)
    if hook_url:
        doc["webhooks"] = [demo_webhook(hook_url)]
    return doc


def demo_webhook(url: str) -> dict[str, Any]:
    """The opt-in demo webhook (every alert event to ``url``, a local receiver allowed).

    Only with ``CITYSIGHT_DEMO_WEBHOOK_URL`` set: a webhook without a receiver would only
    fail, so the plain demo has none (docs/integrations.md, "Try it in the demo").
    """
    return {
        "name": "demo",
        "url": url,
        "secret_env": DEMO_WEBHOOK_SECRET_ENV,
        "allow_networks": ["127.0.0.0/8", "::1/128"],  # the receiver runs on this machine
        "backoff_initial_s": 0.5,
        "backoff_max_s": 10.0,
        "max_attempts": 1000,
    }


def demo_config(workdir: Path, *, port: int = 8000, redis_port: int = 6390) -> CitysightConfig:
    """Render the demo clips if needed and return the demo configuration."""
    from streams.synthetic.clips import render_demo_clips

    clip_dir = workdir / "demo-clips"
    render_demo_clips(clip_dir)
    return parse_config(
        demo_config_dict(clip_dir, port=port, redis_port=redis_port, workdir=workdir),
        "<demo config>",
    )
