"""Alerts: list with filters and pagination, get one, its events, lifecycle transitions."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from citysight.contracts import AlertKind, AlertState, Severity
from serve_app.api.deps import NOT_FOUND, csv_set, ctx, parse_time_range, scoped_alert
from serve_app.api.export import DEFAULT_EXPORT, MAX_EXPORT, export_csv, wants_csv
from serve_app.auth import Dispatcher, Reader
from serve_app.plate_privacy import events_for_principal, for_principal

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

MAX_LIMIT = 500


class TransitionRequest(BaseModel):
    """Body of ``POST /api/alerts/{id}/transitions``."""

    model_config = ConfigDict(extra="forbid")

    to: AlertState = Field(description="Target state")
    unit: str | None = Field(None, max_length=100, description="Unit assigned (assigned)")
    outcome: str | None = Field(None, max_length=200, description="Outcome (resolved)")
    note: str = Field("", max_length=2000, description="Free-text note for the event log")


def _enum_set(value: str | None, enum: Any, name: str) -> set[str] | None:
    items = csv_set(value)
    if items is None:
        return None
    bad = items - {e.value for e in enum}
    if bad:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{name}: unknown value(s) {', '.join(sorted(bad))}; "
            f"expected one of {', '.join(e.value for e in enum)}",
        )
    return items


@router.get(
    "",
    summary="List alerts in the caller's scope, newest first (JSON, or CSV export)",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def list_alerts(
    principal: Reader,
    request: Request,
    kind: str | None = Query(None, description="Kind(s), comma-separated"),
    state: str | None = Query(None, description="State(s), comma-separated"),
    camera_id: str | None = Query(None, description="Camera id(s), comma-separated"),
    department: str | None = Query(
        None, description="Narrow to one department (alerts it owns or gained by escalation)"
    ),
    since: str | None = Query(None, description="started_at >= (Unix s or ISO 8601)"),
    until: str | None = Query(None, description="started_at <= (Unix s or ISO 8601)"),
    severity: str | None = Query(None, description="Severity(ies), comma-separated"),
    limit: int | None = Query(
        None,
        ge=1,
        le=MAX_EXPORT,
        description=f"Most alerts: default 50 and at most {MAX_LIMIT} for JSON; default "
        f"{DEFAULT_EXPORT} and at most {MAX_EXPORT} for CSV",
    ),
    before: str | None = Query(None, max_length=128, description="Cursor: last id seen"),
    format: str | None = Query(
        None, pattern="^(json|csv)$", description="csv: a streamed CSV export (audited)"
    ),
) -> Any:
    """Alerts visible to the caller (department and jurisdiction scope applied on the server).

    ``format=csv`` or ``Accept: text/csv`` streams the same selection as CSV (see
    :mod:`serve_app.api.export`); the export is audited before the first byte leaves.
    """
    c = ctx(request)
    as_csv = format == "csv" or (format is None and wants_csv(request.headers.get("accept", "")))
    if not as_csv and limit is not None and limit > MAX_LIMIT:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"limit: at most {MAX_LIMIT} for JSON (page with before=, or export format=csv)",
        )
    lo, hi = parse_time_range(since, until)
    departments = principal.departments(department)
    filters: dict[str, Any] = {
        "departments": departments,
        "kinds": _enum_set(kind, AlertKind, "kind"),
        "states": _enum_set(state, AlertState, "state"),
        "camera_ids": csv_set(camera_id),
        "since": lo,
        "until": hi,
        "severities": _enum_set(severity, Severity, "severity"),
        "jurisdiction": principal.jurisdiction_filter(),
    }
    if as_csv:
        return export_csv(c, principal, filters, limit or DEFAULT_EXPORT, before, request)
    if departments is not None and not departments:
        return []
    alerts = c.alerts.query(**filters, limit=limit or 50, before=before)
    # Defence in depth: never return an alert outside the caller's scope.
    return [for_principal(a.to_api(), principal) for a in alerts if principal.sees_alert(a)]


@router.get("/{alert_id}", summary="One alert")
def get_alert(
    principal: Reader,
    alert_id: str,
    request: Request,
) -> dict[str, Any]:
    """The alert, or 404 when missing or outside the caller's scope."""
    c = ctx(request)
    out = for_principal(scoped_alert(c, alert_id, principal).to_api(), principal)
    clip = c.clips.record(alert_id)  # the evidence clip's state (serve_app/api/clips.py)
    out["clip"] = clip.to_api() if clip is not None else None
    return out


@router.get("/{alert_id}/events", summary="The alert's lifecycle events")
def alert_events(
    principal: Reader,
    alert_id: str,
    request: Request,
) -> list[dict[str, Any]]:
    """Append-only event log of an alert, oldest first."""
    c = ctx(request)
    alert = scoped_alert(c, alert_id, principal)
    events = [e.model_dump(mode="json") for e in c.alerts.events(alert_id)]
    return events_for_principal(events, alert.kind.value, principal)


@router.post("/{alert_id}/transitions", summary="Move an alert through its lifecycle")
def transition(
    principal: Dispatcher,
    alert_id: str,
    body: TransitionRequest,
    request: Request,
) -> dict[str, Any]:
    """Apply a transition; 409 lists the allowed ones when it is forbidden."""
    from serve_app.store.lifecycle import ALLOWED, AlertNotFound, InvalidTransition

    c = ctx(request)
    scoped_alert(c, alert_id, principal)
    try:
        alert = c.alerts.transition(
            alert_id,
            body.to,
            actor=principal.name,
            note=body.note,
            unit=body.unit,
            outcome=body.outcome,
        )
    except InvalidTransition as exc:
        allowed = ALLOWED.get(exc.from_state, frozenset())
        if exc.to_state in allowed:  # allowed move, but a unit/outcome is missing
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {
                "message": str(exc),
                "from": exc.from_state.value,
                "to": exc.to_state.value,
                "allowed": sorted(s.value for s in allowed),
            },
        ) from None
    except AlertNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None
    logger.info("alert %s -> %s by %s", alert_id, body.to.value, principal.name)
    return for_principal(alert.to_api(), principal)
