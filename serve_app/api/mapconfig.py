"""Settings of the map page: tiles, overlays and the cameras' public fields."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from serve_app.api.deps import camera_path, ctx
from serve_app.api.live import live_url
from serve_app.auth import Reader

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/config/map", tags=["map"])

_CAMERA_FIELDS = ("id", "name", "latitude", "longitude", "heading_deg", "jurisdiction", "enabled")


@router.get("", summary="Map settings and camera positions")
def map_config(
    principal: Reader,
    request: Request,
) -> dict[str, Any]:
    """Tile URL (``null`` = plain background), the city's time zone, the default UI
    language, departments' display names, overlays, cameras."""
    c = ctx(request)
    health = c.cameras.health()
    cams = []
    for cam in c.cameras.list():
        path = camera_path(c, cam)
        if not principal.sees_place(path):
            continue  # a township officer's map holds only the township's cameras
        d = {f: getattr(cam, f) for f in _CAMERA_FIELDS}
        d["jurisdiction"] = path[-1] if path else cam.jurisdiction
        d["jurisdiction_path"] = path
        d["state"] = (health.get(cam.id) or {}).get("state", "unknown")
        d["live_url"] = live_url(c.cfg, cam.id)
        cams.append(d)
    center = None
    if cams:
        center = {
            "lat": sum(x["latitude"] for x in cams) / len(cams),
            "lon": sum(x["longitude"] for x in cams) / len(cams),
        }
    return {
        "tile_url": c.cfg.map.tile_url,
        "timezone": c.cfg.site.timezone,
        # The page's default language (auto = the browser's); the user's switch wins.
        "language": c.cfg.ui.language,
        "departments": [
            {"id": d.id, "name": d.name, "names": dict(d.names)} for d in c.cfg.departments
        ],
        "overlays": [
            {"name": o.name, "url": f"/api/config/map/overlays/{i}"}
            for i, o in enumerate(c.cfg.map.overlays)
        ],
        "center": center,
        "cameras": cams,
        "jurisdictions": _jurisdictions(c, principal),
        "principal": principal.to_dict(),
    }


def _jurisdictions(c: Any, principal: Reader) -> dict[str, Any]:
    """The areas the caller may see (its own jurisdiction and below; all for city-wide)."""
    tree = c.cfg.tree()
    ids = list(tree.areas) if principal.city_wide else tree.subtree(principal.jurisdiction)
    return {
        "levels": tree.levels(),
        "source": c.cfg.jurisdictions.source,
        "areas": [tree.public(i) for i in ids],
    }


@router.get("/overlays/{index}", summary="One GeoJSON overlay")
def overlay(
    principal: Reader,
    index: int,
    request: Request,
) -> Any:
    """The overlay's GeoJSON document."""
    overlays = ctx(request).cfg.map.overlays
    if not 0 <= index < len(overlays):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "overlay not found")
    try:
        return json.loads(Path(overlays[index].path).read_text())
    except (OSError, ValueError) as exc:
        logger.warning("overlay %s unreadable: %s", overlays[index].name, exc)
        raise HTTPException(status.HTTP_404_NOT_FOUND, "overlay file unreadable") from None
