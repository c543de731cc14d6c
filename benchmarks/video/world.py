"""A live-view world (tests and the video benchmark): real Redis, a live H.264 camera
(HTTP MPEG-TS with a burnt-in clock), a real stream worker reading it and the real API
under uvicorn."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import redis

from benchmarks.fanout.world import ServerThread
from benchmarks.video.live import ClockCamera
from citysight import keys
from citysight.app.services.redis_server import free_port
from citysight.config import (
    AllowedNetwork,
    CameraConfig,
    CameraProfile,
    CitysightConfig,
    StreamsService,
)
from serve_app.http import create_api
from serve_app.store.cameras import CameraRegistry
from streams.testing.infer import empty_infer_factory
from streams.worker import StreamWorker

LIVE_ROLES: dict[str, dict[str, Any]] = {
    "viewer": {"department": "fire", "scopes": ["alerts:read", "video:live"]},
    "reader": {"department": "fire", "scopes": ["alerts:read"]},
    "foreign": {"department": "police", "scopes": ["alerts:read", "video:live"]},
    "admin": {"department": "*", "scopes": ["alerts:read", "video:live"]},
    "noscope": {"department": "fire", "scopes": []},
}


def live_token(role: str) -> str:
    """Deterministic token of a live-test role."""
    return f"live-{role}-0123456789"


def seed(r: redis.Redis) -> None:
    """Store every live-test role's principal."""
    for role, p in LIVE_ROLES.items():
        rec = {"name": f"{role}-user", "role": role, **p}
        r.hset(
            keys.PRINCIPALS, hashlib.sha256(live_token(role).encode()).hexdigest(), json.dumps(rec)
        )


class LiveWorld:
    """Camera ``clock`` (fire department) read by a worker, served by the API.

    Args:
        redis_url: A flushed Redis.
        live: ``services.live`` overrides (caps, queues).
        worker: Start the stream worker.
    """

    def __init__(
        self,
        redis_url: str,
        live: dict[str, Any] | None = None,
        worker: bool = True,
        noise: bool = False,
        camera: dict[str, Any] | None = None,
        infer_factory: Any = empty_infer_factory,
    ) -> None:
        self.r = redis.Redis.from_url(redis_url)
        seed(self.r)
        self.camera = ClockCamera(noise=noise, **(camera or {})).start()
        self.cam = CameraConfig(
            id="clock",
            name="Clock camera",
            url=self.camera.url,
            latitude=20.03,
            longitude=110.33,
            jurisdiction="longhua",
            profile=CameraProfile(
                analytics_fps=float((camera or {}).get("fps", 25)) if camera else 5,
                input_width=320,
                input_height=240,
            ),
        )
        self.cfg = CitysightConfig.model_validate(
            {
                "departments": [{"id": "fire"}, {"id": "police"}],
                "routing": [{"kind": "*", "jurisdiction": "longhua", "department": "fire"}],
                "services": {"live": live or {}},
            }
        )
        CameraRegistry(self.r).put(self.cam)
        streams = StreamsService(
            shards=1,
            allowed_networks=[AllowedNetwork(cidr="127.0.0.1/32")],
            allowed_url_schemes=["http"],
        )
        self.worker = (
            StreamWorker(
                [self.cam], streams, redis_url, infer_factory, live_cfg=self.cfg.services.live
            )
            if worker
            else None
        )
        self.port = free_port()
        self.app = create_api(self.cfg, redis_url)
        self.server = ServerThread(self.app, self.port).start()

    @property
    def ws_url(self) -> str:
        """The camera's live URL."""
        return f"ws://127.0.0.1:{self.port}/ws/live/clock"

    @property
    def http(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.port}"

    def analysed(self) -> int:
        """Frames of the camera analysed by the worker so far."""
        assert self.worker is not None
        return int(self.worker.stats()["cameras"]["clock"].get("frames_analysed", 0))

    def close(self) -> None:
        """Stop everything this world started."""
        self.server.stop()
        if self.worker is not None:
            self.worker.stop()
        self.camera.stop()
        self.r.close()
