"""The camera registry (``citysight:cameras``) and camera health (``citysight:camera-health``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import redis
from pydantic import ValidationError

from citysight import keys
from citysight.config import CameraConfig, format_validation_error
from serve_app.store.feed import publish_feed

logger = logging.getLogger(__name__)


class CameraRegistry:
    """Cameras as ``CameraConfig`` JSON; every change is announced on a pub/sub channel."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def list(self) -> list[CameraConfig]:
        """All cameras, by id."""
        rows = self.r.hgetall(keys.CAMERAS)
        cams = []
        for k, v in rows.items():
            try:
                cams.append(CameraConfig.model_validate_json(v))
            except ValidationError as exc:
                # An entry written by an older version (e.g. a URL past today's length cap)
                # stays in Redis for the operator, but never breaks the listing.
                logger.warning(
                    "camera %s in the registry is invalid: %s (skipped)",
                    (keys.text(k) or "?")[:64],
                    "; ".join(format_validation_error(exc)),
                )
        return sorted(cams, key=lambda c: c.id)

    def get(self, cid: str) -> CameraConfig | None:
        """One camera or ``None``."""
        raw = self.r.hget(keys.CAMERAS, cid)
        if raw is None:
            return None
        try:
            return CameraConfig.model_validate_json(raw)
        except ValidationError as exc:
            logger.warning(
                "camera %s in the registry is invalid: %s",
                cid[:64],
                "; ".join(format_validation_error(exc)),
            )
            return None

    def put(self, cam: CameraConfig) -> None:
        """Create or replace a camera and notify ``citysight:cameras:changed``."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(keys.CAMERAS, cam.id, cam.model_dump_json())
        pipe.publish(keys.CAMERAS_CHANGED, cam.id)
        pipe.execute()

    def delete(self, cid: str, jurisdictions: Sequence[str] | None = None) -> bool:
        """Remove a camera with its health entry; ``False`` when it did not exist.

        In one transaction: the registry entry, the ``citysight:camera-health`` entry, the
        change notification and a ``camera_removed`` feed message (the map drops its marker)
        carrying the camera's jurisdiction path (``jurisdictions``) for scoped subscribers.
        """
        raw = self.r.hget(keys.CAMERAS, cid)
        if raw is None:
            return False
        try:
            cam = CameraConfig.model_validate_json(raw)
            lat, lon = cam.latitude, cam.longitude
        except ValueError:  # an unreadable entry is still removed
            lat = lon = 0.0
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(keys.CAMERAS, cid)
        pipe.hdel(keys.CAMERA_HEALTH, cid)
        pipe.publish(keys.CAMERAS_CHANGED, cid)
        publish_feed(
            pipe, type="camera_removed", payload={"camera_id": cid}, department="",
            kind="", camera_id=cid, severity="info", lat=lat, lon=lon,
            jurisdictions=list(jurisdictions or ()),
        )  # fmt: skip
        return bool(pipe.execute()[0])

    def health(self) -> dict[str, dict[str, Any]]:
        """Camera id → last ``CameraStatus`` (as a dict)."""
        return {
            keys.text(k) or "": json.loads(v) for k, v in self.r.hgetall(keys.CAMERA_HEALTH).items()
        }
