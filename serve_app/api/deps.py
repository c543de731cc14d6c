"""Shared request helpers of the routers: context access, time parsing, scoped lookups."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request, status

from serve_app.auth import Principal

if TYPE_CHECKING:
    from citysight.contracts import Alert
    from serve_app.http import ApiContext

logger = logging.getLogger(__name__)

NOT_FOUND = "alert not found"


def ctx(request: Request) -> ApiContext:
    """The application context (config, Redis, stores) of this app."""
    c: ApiContext = request.app.state.ctx
    return c


def parse_time(value: str | None, name: str) -> float | None:
    """Unix seconds from a query value given as Unix seconds or ISO 8601.

    Raises:
        HTTPException: 422 when the value is neither.
    """
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{name}: expected Unix seconds or an ISO 8601 time, got {value!r}",
        ) from None


def scoped_alert(c: ApiContext, alert_id: str, principal: Principal) -> Alert:
    """The alert if it exists AND is within the principal's department scope.

    In scope means the principal's department owns the alert or gained it by escalation.

    A foreign alert answers exactly like a missing one (404, same body) so ids of other
    departments' alerts cannot be probed.

    Raises:
        HTTPException: 404.
    """
    alert = c.alerts.get(alert_id) if len(alert_id) <= 128 else None
    if alert is None or not principal.sees_any(alert.departments()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return alert


def csv_set(value: str | None) -> set[str] | None:
    """``"a,b"`` → ``{"a", "b"}``; empty → ``None``."""
    if not value:
        return None
    items = {v.strip() for v in value.split(",") if v.strip()}
    return items or None


def public_error(detail: Any) -> dict[str, Any]:
    """JSON body of an error response."""
    return {"detail": detail}
