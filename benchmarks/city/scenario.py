"""The simulated city: cameras, rules, departments, subscribers and the detection mix.

The configuration is an ordinary :class:`~citysight.config.CitysightConfig`, so the Serve
app under test runs exactly as in production; only the camera sources are simulated (no
video: producers write :class:`~citysight.contracts.FrameResult` messages directly).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from citysight.app.demo import DEMO_DEPARTMENTS, DEMO_ROUTING
from citysight.config import CitysightConfig, parse_config
from citysight.rulesets import demo_rules

DEPARTMENTS = ("police", "enforcement", "fire", "duty")
HOTLIST = ("琼A12345", "琼B67890", "粤C24680")
_DISTRICTS = ("longhua", "meilan", "xiuying", "qiongshan")


@dataclass(frozen=True)
class Mix:
    """What the simulated cameras see.

    Rates of *episodes* are per camera per hour; an episode is a run of consecutive frames
    with the same object (one track), long enough for the rules' persistence to trigger.
    Background rates are per frame and never raise an alert on their own.

    Attributes:
        fire_per_cam_h: Fire episodes (rule ``fire``, 3 of 5 frames).
        smoke_per_cam_h: Smoke episodes (rule ``smoke``).
        face_per_cam_h: Faces in a restricted zone (rule ``face-restricted``); only cameras
            with a restricted zone get them.
        hotlist_per_cam_h: Reads of a hotlisted plate (rule ``plate-hotlist``).
        vending_per_cam_h: Stalls settling in a no-vending zone (rule ``vending``, dwell).
        episode_s: Length of one episode.
        plate_frame_rate: Fraction of frames with an ordinary (not hotlisted) plate read.
        face_frame_rate: Fraction of frames with a passing face outside any restricted zone.
        person_frame_rate: Fraction of frames with pedestrians or vehicles.
        low_score_fire_rate: Fraction of frames with a single low-confidence fire blip
            (below the rule's persistence; must not alert).
    """

    fire_per_cam_h: float = 0.5
    smoke_per_cam_h: float = 0.5
    face_per_cam_h: float = 1.0
    hotlist_per_cam_h: float = 1.0
    vending_per_cam_h: float = 0.5
    episode_s: float = 5.0
    plate_frame_rate: float = 0.04
    face_frame_rate: float = 0.03
    person_frame_rate: float = 0.05
    low_score_fire_rate: float = 0.002

    def to_dict(self) -> dict[str, float]:
        """Plain form (for the JSON report)."""
        return asdict(self)


def camera_id(i: int) -> str:
    """Id of simulated camera ``i``."""
    return f"sim-{i:05d}"


def camera_kind(i: int) -> str:
    """Deterministic role of camera ``i``: ``traffic``, ``building``, ``street`` or ``roof``.

    Traffic cameras read plates; building cameras have a restricted zone (faces); street
    cameras have a no-vending zone; every camera can see fire and smoke.
    """
    return ("traffic", "traffic", "building", "street", "roof")[i % 5]


def _camera(i: int) -> dict[str, Any]:
    kind = camera_kind(i)
    # A 100 x 75 grid over Haikou, about 150 m apart.
    lat = 19.98 + (i // 100) * 0.00135
    lon = 110.25 + (i % 100) * 0.0014
    cam: dict[str, Any] = {
        "id": camera_id(i),
        "name": f"simulated {kind} camera {i}",
        "url": f"rtsp://127.0.0.1:8554/sim/{i}",
        "latitude": round(lat, 6),
        "longitude": round(lon, 6),
        "jurisdiction": _DISTRICTS[i % len(_DISTRICTS)],
        "detectors": ["plate", "face", "fire_smoke", "vending"],
        "profile": {"analytics_fps": 5.0},
    }
    if kind == "building":
        cam["zones"] = [
            {
                "id": "restricted",
                "type": "restricted",
                "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
            }
        ]
    if kind == "street":
        cam["zones"] = [
            {
                "id": "pavement",
                "type": "no_vending",
                "polygon": [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]],
            }
        ]
    return cam


def token_env(dept: str) -> str:
    """Environment variable naming the bench token of a department."""
    return f"CITYSIGHT_BENCH_TOKEN_{dept.upper()}"


def city_config_dict(
    cameras: int, *, http_port: int, shards: int = 4, max_connections: int = 2000
) -> dict[str, Any]:
    """The simulated city's configuration document.

    Args:
        cameras: Number of cameras (ids ``sim-00000`` ...).
        http_port: Port of the Serve HTTP proxy (bound to 127.0.0.1).
        shards: Detections streams.
        max_connections: Ingress ``max_ongoing_requests`` (every WebSocket holds one).
    """
    # The demo's rules; the simulated stalls stay 5 s (Mix.episode_s), so a 3 s dwell.
    rules = demo_rules(vending_dwell_s=3)
    return {
        "version": 1,
        "cameras": [_camera(i) for i in range(cameras)],
        "rules": rules,
        "plate_hotlist": [{"plate": p, "reason": "bench hotlist"} for p in HOTLIST],
        "departments": [dict(d) for d in DEMO_DEPARTMENTS],
        "routing": [dict(r) for r in DEMO_ROUTING],
        "tokens": [
            {
                "name": f"bench-{d}",
                "role": "bench",
                "department": "*" if d == "duty" else d,
                "scopes": ["alerts:read", "alerts:dispatch"],
                "token_env": token_env(d),
            }
            for d in DEPARTMENTS
        ],
        "services": {
            "http": {"host": "127.0.0.1", "port": http_port, "max_connections": max_connections},
            "streams": {"shards": shards},
        },
    }


def city_config(cameras: int, *, http_port: int, shards: int = 4) -> CitysightConfig:
    """Parsed :func:`city_config_dict`."""
    return parse_config(
        city_config_dict(cameras, http_port=http_port, shards=shards), "<city bench>"
    )


def make_tokens() -> dict[str, str]:
    """A fresh random bearer token per department (``duty`` sees every department)."""
    return {d: secrets.token_urlsafe(24) for d in DEPARTMENTS}


def principals(tokens: dict[str, str]) -> dict[str, str]:
    """``citysight:principals`` entries (sha256 of token → principal JSON) for the tokens."""
    out = {}
    for dept, tok in tokens.items():
        out[hashlib.sha256(tok.encode()).hexdigest()] = json.dumps(
            {
                "name": f"bench-{dept}",
                "role": "bench",
                "department": "*" if dept == "duty" else dept,
                "scopes": ["alerts:read", "alerts:dispatch"],
            }
        )
    return out


def subscriber_departments(count: int) -> list[str]:
    """Department of each of ``count`` subscribers, round-robin over :data:`DEPARTMENTS`."""
    return [DEPARTMENTS[i % len(DEPARTMENTS)] for i in range(count)]
