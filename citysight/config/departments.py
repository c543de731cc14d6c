"""Departments that receive alerts and the routing of alerts to them."""

from __future__ import annotations

from typing import Literal

from citysight.config.base import ID_PATTERN, Strict, _f
from citysight.contracts import AlertKind


class DepartmentConfig(Strict):
    """A department that receives alerts."""

    id: str = _f("Department id", "Unique id.", pattern=ID_PATTERN)
    name: str = _f("Name", "Display name.", default="")
    names: dict[Literal["zh-CN", "en"], str] = _f(
        "Names by language",
        "Display name per UI language, e.g. {zh-CN: 消防救援}; the map falls back to name, "
        "then the id.",
        default_factory=dict,
    )
    supervisor: str | None = _f(
        "Supervisor", "Department that gets alerts not acknowledged within the SLA.", default=None
    )
    ack_sla_s: float = _f(
        "Acknowledge SLA", "Seconds to acknowledge before escalation.", default=300, gt=0
    )


class RouteConfig(Strict):
    """Maps (alert kind, jurisdiction) to a department; first match wins."""

    kind: AlertKind | Literal["*"] = _f("Kind", "Alert kind or * for any.")
    jurisdiction: str = _f("Jurisdiction", "Jurisdiction glob.", default="*")
    department: str = _f("Department", "Department id.")
