"""Shared request helpers of the routers: context access, time parsing, scoped lookups."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from fastapi import HTTPException, Request, status

from serve_app.auth import Principal

if TYPE_CHECKING:
    from citysight.config import CameraConfig
    from citysight.contracts import Alert
    from serve_app.http import ApiContext


NOT_FOUND = "alert not found"


def ctx(request: Request) -> ApiContext:
    """The application context (config, Redis, stores) of this app."""
    c: ApiContext = request.app.state.ctx
    return c


# The largest time a datetime can hold (9999-12-31T23:59:59Z); Redis scores and the store
# take any float, so the bounds are checked here or a NaN reaches Redis as a storage error.
MAX_TIME_S: Final = 253402300799.0


def parse_time(value: str | None, name: str) -> float | None:
    """Unix seconds from a query value given as Unix seconds or ISO 8601.

    Raises:
        HTTPException: 400 when the value is not a time, is not finite (``nan``, ``inf``),
            or lies before 1970 or after 9999.
    """
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    try:
        t = float(text)
    except ValueError:
        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                f"{name}: expected Unix seconds or an ISO 8601 time, got {value!r}",
            ) from None
    if not math.isfinite(t):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"{name}: must be a finite time, got {value!r}"
        )
    if not 0 <= t <= MAX_TIME_S:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"{name}: must lie between 1970-01-01 (0) and 9999-12-31 ({MAX_TIME_S:.0f}) "
            f"in Unix seconds, got {value!r}",
        )
    return t


def parse_time_range(
    since: str | None, until: str | None, names: tuple[str, str] = ("since", "until")
) -> tuple[float | None, float | None]:
    """Both ends of a time range (:func:`parse_time`); 400 when the start is after the end."""
    lo, hi = parse_time(since, names[0]), parse_time(until, names[1])
    if lo is not None and hi is not None and lo > hi:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"{names[0]} ({since}) is after {names[1]} ({until})"
        )
    return lo, hi


def scoped_alert(c: ApiContext, alert_id: str, principal: Principal) -> Alert:
    """The alert if it exists AND is within the principal's department and jurisdiction scope.

    In scope means the principal's department owns the alert or gained it by escalation,
    and the principal's jurisdiction (if limited) is on the alert's jurisdiction path.

    A foreign alert answers exactly like a missing one (404, same body) so ids of other
    departments' alerts cannot be probed.

    Raises:
        HTTPException: 404.
    """
    alert = c.alerts.get(alert_id) if len(alert_id) <= 128 else None
    if alert is None or not principal.sees_alert(alert):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return alert


def camera_path(c: ApiContext, cam: CameraConfig) -> list[str]:
    """A camera's jurisdiction path (placed by position when its config names none)."""
    return c.cfg.jurisdiction_path(c.cfg.place(cam))


def sees_camera(c: ApiContext, cam: CameraConfig, principal: Principal) -> bool:
    """Whether the camera lies in the principal's jurisdiction (cameras are city data
    for every department; only the jurisdiction limits them)."""
    return principal.city_wide or principal.jurisdiction in camera_path(c, cam)


def visible_camera_ids(c: ApiContext, principal: Principal) -> set[str] | None:
    """Ids of the cameras a jurisdiction-scoped principal may see (``None``: all)."""
    if principal.city_wide:
        return None
    return {cam.id for cam in c.cameras.list() if sees_camera(c, cam, principal)}


def csv_set(value: str | None) -> set[str] | None:
    """``"a,b"`` → ``{"a", "b"}``; empty → ``None``."""
    if not value:
        return None
    items = {v.strip() for v in value.split(",") if v.strip()}
    return items or None


def public_error(detail: Any) -> dict[str, Any]:
    """JSON body of an error response."""
    return {"detail": detail}
