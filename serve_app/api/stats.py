"""Dispatch statistics of the caller's scope: ``GET /api/stats``.

Counts by state, median and p90 time to acknowledge and to resolve, acknowledge-SLA breaches
(the departments' ``ack_sla_s``), reopen rate and precision (confirmed vs false alarm),
overall, per group and per day, for alerts that started in ``[from, to]``. The scope is the
caller's (department and jurisdiction): a township officer's statistics are the township's.
Cost and bounds: :mod:`serve_app.store.stats`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from citysight.contracts import Alert
from serve_app.api.deps import ctx, parse_time
from serve_app.auth import Reader
from serve_app.store.stats import GROUPS, MAX_ALERTS, compute_stats

router = APIRouter(prefix="/api/stats", tags=["stats"])

DEFAULT_RANGE_S = 7 * 86400
"""Range when ``from`` is not given: the seven days before ``to``."""


def _unprocessable(msg: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, msg)


@router.get("", summary="Dispatch statistics of the caller's scope")
def stats(
    principal: Reader,
    request: Request,
    from_: str | None = Query(
        None, alias="from", description="Start (Unix s or ISO 8601; default: 7 days before to)"
    ),
    to: str | None = Query(None, description="End (Unix s or ISO 8601; default: now)"),
    group_by: str = Query("jurisdiction", description=f"One of {', '.join(GROUPS)}"),
    level: str | None = Query(
        None, description="For group_by=jurisdiction: the level to group at (e.g. township)"
    ),
    department: str | None = Query(None, description="Narrow to one department"),
) -> dict[str, Any]:
    """Statistics; 422 for bad times, ``from`` after ``to``, or an unknown group or level."""
    c = ctx(request)
    if group_by not in GROUPS:
        raise _unprocessable(f"group_by: unknown {group_by!r}; expected one of {', '.join(GROUPS)}")
    levels = c.cfg.tree().levels()
    if level is not None and group_by != "jurisdiction":
        raise _unprocessable("level: only with group_by=jurisdiction")
    if level is not None and level not in levels:
        raise _unprocessable(
            f"level: unknown {level!r}; the hierarchy's levels are "
            f"{', '.join(levels) if levels else '(none configured)'}"
        )
    try:
        hi = parse_time(to, "to")
        lo = parse_time(from_, "from")
    except HTTPException as exc:  # the shared parser answers 400; statistics say 422
        raise _unprocessable(str(exc.detail)) from None
    now = time.time()
    hi = now if hi is None else hi
    lo = hi - DEFAULT_RANGE_S if lo is None else lo
    if lo > hi:
        raise _unprocessable(f"from ({from_}) is after to ({to})")
    departments = principal.departments(department)
    jurisdiction = principal.jurisdiction_filter()
    base: dict[str, Any] = {
        "from": lo,
        "to": hi,
        "group_by": group_by,
        "level": level,
        "timezone": c.cfg.site.timezone,
        "scope": {
            "department": principal.department if department is None else department,
            "jurisdiction": principal.jurisdiction,
        },
    }
    pages: Iterable[list[Alert]] = []
    if departments is None or departments:
        n = c.alerts.count_range(lo, hi, departments=departments, jurisdiction=jurisdiction)
        if n > MAX_ALERTS:
            raise _unprocessable(
                f"the range holds {n} alerts, more than {MAX_ALERTS}: narrow from/to"
            )
        pages = c.alerts.iter_pages(lo, hi, departments=departments, jurisdiction=jurisdiction)
    body = compute_stats(
        c.alerts, pages, group_by=group_by, level=level, since=lo, until=hi, now=now
    )
    return {**base, **body}
