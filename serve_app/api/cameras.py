"""Cameras: the registry with health (read by all), create/replace/delete (cameras:write).

Camera URLs are returned without any user information (user name or password). A caller
can never name a secret: ``url_password_env`` is refused (422) — camera passwords are bound
to camera ids by the operator (``services.streams.camera_secrets``). Submitted URLs go through
the camera URL policy (``citysight.urls.check_url``: allowed schemes, length, literal
addresses against ``services.streams.allowed_networks``), imported unconditionally: it lives on
the ground floor, so the check cannot silently vanish. Stream workers check the resolved
address again at every connect.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status

from citysight.config import CameraConfig, StreamsService
from citysight.urls import check_url, redact
from serve_app.api.deps import camera_path, ctx, sees_camera
from serve_app.api.live import live_url
from serve_app.auth import CameraWriter, Principal, Reader
from serve_app.store.alerts import CAMERA_REMOVED

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/cameras", tags=["cameras"])


def public_camera(
    cam: CameraConfig,
    health: dict[str, Any] | None,
    live: str | None = None,
    path: list[str] | None = None,
) -> dict[str, Any]:
    """API form of a camera: no credentials, with its health, live-view path and
    jurisdiction path."""
    d = cam.model_dump(mode="json", exclude={"url_password_env"})
    d["url"] = redact(cam.url, keep_user=False)
    if cam.substream_url is not None:
        d["substream_url"] = redact(cam.substream_url, keep_user=False)
    d["health"] = health or {"state": "unknown"}
    d["live_url"] = live
    if path is not None:
        d["jurisdiction"] = path[-1] if path else cam.jurisdiction
        d["jurisdiction_path"] = path
    return d


def _placed(request: Request, cam: CameraConfig, principal: Principal) -> CameraConfig:
    """The submitted camera with its jurisdiction resolved and checked against the caller.

    A camera that names no jurisdiction is placed by its position; one naming an area
    outside the hierarchy is refused (422), and a jurisdiction-scoped writer may only
    register cameras inside its own jurisdiction (403).
    """
    c = ctx(request)
    tree = c.cfg.tree()
    if tree and cam.jurisdiction != "default" and cam.jurisdiction not in tree:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"jurisdiction: unknown jurisdiction {cam.jurisdiction!r} (leave it out to place "
            "the camera by its position)",
        )
    placed = cam.model_copy(update={"jurisdiction": c.cfg.place(cam)})
    if not sees_camera(c, placed, principal):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the camera lies outside your jurisdiction ({principal.jurisdiction})",
        )
    return placed


def check_camera(cam: CameraConfig, streams: StreamsService) -> None:
    """Apply the camera policy to a submitted camera; 422 with the reason when refused.

    ``url_password_env`` is refused whatever it names (set or not, the answer is the same:
    the caller learns nothing about the workers' environment).
    """
    if cam.url_password_env is not None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "url_password_env: not accepted from the API; camera passwords are bound to "
            "camera ids by the operator (services.streams.camera_secrets)",
        )
    for name, url in (("url", cam.url), ("substream_url", cam.substream_url)):
        if url is None:
            continue
        try:
            check_url(url, streams.allowed_url_schemes, streams.network_policy())
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: {exc}") from None


@router.get("", summary="Cameras with health")
def list_cameras(
    principal: Reader,
    request: Request,
) -> list[dict[str, Any]]:
    """Every registered camera with its reader health; credentials never leave."""
    c = ctx(request)
    health = c.cameras.health()
    out = []
    for cam in c.cameras.list():
        path = camera_path(c, cam)
        if principal.sees_place(path):
            out.append(public_camera(cam, health.get(cam.id), live_url(c.cfg, cam.id), path))
    return out


@router.get("/{camera_id}", summary="One camera with health")
def get_camera(
    principal: Reader,
    camera_id: str,
    request: Request,
) -> dict[str, Any]:
    """One camera, or 404 (also for a camera outside the caller's jurisdiction)."""
    c = ctx(request)
    cam = c.cameras.get(camera_id)
    if cam is None or not sees_camera(c, cam, principal):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "camera not found")
    return public_camera(
        cam, c.cameras.health().get(camera_id), live_url(c.cfg, cam.id), camera_path(c, cam)
    )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a camera")
def create_camera(
    principal: CameraWriter,
    cam: CameraConfig,
    request: Request,
) -> dict[str, Any]:
    """Add a camera (409 when the id exists)."""
    c = ctx(request)
    check_camera(cam, c.cfg.services.streams)
    cam = _placed(request, cam, principal)
    if c.cameras.get(cam.id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"camera {cam.id!r} already exists")
    c.cameras.put(cam)
    c.audit.append(actor=principal.name, action="camera.create", target=cam.id)
    logger.info("camera %s created by %s", cam.id, principal.name)
    return public_camera(cam, None, live_url(c.cfg, cam.id))


@router.put("/{camera_id}", summary="Replace a camera")
def replace_camera(
    principal: CameraWriter,
    camera_id: str,
    cam: CameraConfig,
    request: Request,
) -> dict[str, Any]:
    """Replace an existing camera's config (the body id must match the path)."""
    c = ctx(request)
    if cam.id != camera_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "id: must match the camera id in the path"
        )
    check_camera(cam, c.cfg.services.streams)
    old = c.cameras.get(camera_id)
    if old is None or not sees_camera(c, old, principal):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "camera not found")
    cam = _placed(request, cam, principal)
    c.cameras.put(cam)
    c.audit.append(actor=principal.name, action="camera.update", target=cam.id)
    return public_camera(cam, c.cameras.health().get(camera_id), live_url(c.cfg, cam.id))


@router.delete("/{camera_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a camera")
def delete_camera(
    principal: CameraWriter,
    camera_id: str,
    request: Request,
) -> Response:
    """Delete a camera (404 when unknown).

    Its health entry goes with it, subscribers get a ``camera_removed`` message (the map
    drops the marker), and its open system alerts (``camera_offline``) are closed with an
    event by ``system``.
    """
    c = ctx(request)
    old = c.cameras.get(camera_id)
    if (
        old is None
        or not sees_camera(c, old, principal)
        or not c.cameras.delete(camera_id, camera_path(c, old))
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "camera not found")
    c.audit.append(actor=principal.name, action="camera.delete", target=camera_id)
    closed = c.alerts.resolve_camera_alerts(
        camera_id,
        note=f"camera {camera_id} deleted by {principal.name}",
        outcome=CAMERA_REMOVED,
        close=True,
    )
    logger.info(
        "camera %s deleted by %s (%d open alert(s) closed)", camera_id, principal.name, len(closed)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
