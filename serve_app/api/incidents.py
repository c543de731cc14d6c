"""Incidents: alerts of one kind on several cameras merged by the rules (by ``incident_id``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from serve_app.api.deps import ctx
from serve_app.auth import Principal, Reader

router = APIRouter(prefix="/api/incidents", tags=["incidents"])

SCAN = 500


def _scoped(c: Any, incident_id: str, principal: Principal) -> dict[str, Any] | None:
    """The incident restricted to the caller's alerts (``None`` when none is visible)."""
    inc = c.alerts.incident(incident_id)
    if inc is None:
        return None
    alerts = [a for a in (c.alerts.get(i) for i in inc["alert_ids"]) if a is not None]
    mine = [a for a in alerts if principal.sees_alert(a)]
    if not mine:
        return None
    cams: list[str] = []
    for a in mine:
        for cam in a.camera_ids or [a.camera_id]:
            if cam not in cams:
                cams.append(cam)
    return {**inc, "alert_ids": [a.id for a in mine], "camera_ids": cams}


@router.get("", summary="Cross-camera incidents in the caller's scope, newest first")
def list_incidents(
    principal: Reader,
    request: Request,
    limit: int = Query(50, ge=1, le=500),
) -> list[dict[str, Any]]:
    """Incidents with at least one alert the caller may see (other alerts are left out)."""
    c = ctx(request)
    seen: list[str] = []
    scan = c.alerts.query(
        departments=principal.departments(),
        jurisdiction=principal.jurisdiction_filter(),
        limit=SCAN,
    )
    for a in scan:
        if a.incident_id and a.incident_id not in seen and principal.sees_alert(a):
            seen.append(a.incident_id)
    out = []
    for iid in seen:
        inc = _scoped(c, iid, principal)
        if inc is not None:
            out.append(inc)
        if len(out) >= limit:
            break
    return out


@router.get("/{incident_id}", summary="One incident")
def get_incident(
    principal: Reader,
    incident_id: str,
    request: Request,
) -> dict[str, Any]:
    """The incident, or 404 when unknown or outside the caller's scope."""
    inc = _scoped(ctx(request), incident_id, principal) if len(incident_id) <= 128 else None
    if inc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "incident not found")
    return inc
