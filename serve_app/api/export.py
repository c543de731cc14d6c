"""CSV export of the alert list (``GET /api/alerts?format=csv`` or ``Accept: text/csv``).

* Same filters and scope as the JSON list (department and jurisdiction on the server).
* Streamed: alerts are read 500 at a time and written row by row; memory holds one page.
* Audited before the first byte leaves (``alerts.export``: who, which filters, the reason
  from the optional ``X-Audit-Reason`` header); a failed audit write means no export.
* Plate text only for principals holding ``plates:query`` (the JSON list's rule).
* CSV-injection safe: a text cell that a spreadsheet would read as a formula (starting with
  ``=``, ``+``, ``-``, ``@``, tab or carriage return) is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from fastapi import HTTPException, Request, status
from fastapi.responses import StreamingResponse

from serve_app.auth import Principal
from serve_app.plate_privacy import for_principal

if TYPE_CHECKING:
    from serve_app.http import ApiContext

logger = logging.getLogger(__name__)

DEFAULT_EXPORT: Final = 10_000
MAX_EXPORT: Final = 100_000
PAGE: Final = 500

COLUMNS: Final = (
    "id", "kind", "severity", "state", "department", "departments", "jurisdiction",
    "jurisdiction_path", "camera_id", "camera_ids", "rule_id", "subject", "summary",
    "plate_text", "started_at", "ended_at", "updated_at", "latitude", "longitude", "score",
    "assigned_unit", "outcome", "escalated", "incident_id",
)  # fmt: skip

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A cell value that no spreadsheet evaluates as a formula (numbers pass unchanged)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def wants_csv(accept: str) -> bool:
    """Whether an ``Accept`` header prefers CSV over JSON (a plain ``text/csv`` mention)."""
    types = [p.split(";")[0].strip().lower() for p in accept.split(",")]
    return "text/csv" in types and "application/json" not in types[: types.index("text/csv")]


def row(alert: dict[str, Any]) -> list[Any]:
    """One CSV row of an alert's API form (already redacted for the caller)."""
    loc = alert.get("location") or {}
    values = {
        **alert,
        "departments": "|".join([alert["department"], *alert.get("escalated_to", [])]),
        "jurisdiction_path": "/".join(alert.get("jurisdiction_path", [])),
        "camera_ids": "|".join(alert.get("camera_ids", [])),
        "latitude": loc.get("lat"),
        "longitude": loc.get("lon"),
    }
    return [safe_cell(values.get(c)) for c in COLUMNS]


def _filters_text(filters: dict[str, Any], limit: int, before: str | None) -> str:
    parts = []
    for k, v in sorted(filters.items()):
        if v is None:
            continue
        parts.append(f"{k}={','.join(sorted(v)) if isinstance(v, set) else v}")
    parts.append(f"limit={limit}")
    if before:
        parts.append(f"before={before}")
    return "alerts?" + "&".join(parts)


def export_csv(
    c: ApiContext,
    principal: Principal,
    filters: dict[str, Any],
    limit: int,
    before: str | None,
    request: Request,
) -> StreamingResponse:
    """The streamed CSV response (audited first; see the module docstring)."""
    reason = request.headers.get("x-audit-reason", "").strip()
    if len(reason) > 500:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "X-Audit-Reason: at most 500 characters"
        )
    target = _filters_text(filters, limit, before)
    c.audit.append(actor=principal.name, action="alerts.export", target=target, reason=reason)
    logger.info("alerts exported by %s: %s", principal.name, target)

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        w = csv.writer(buf)
        # A byte-order mark: spreadsheets then read the Chinese names as UTF-8.
        w.writerow(COLUMNS)
        yield "\ufeff" + buf.getvalue()
        if filters.get("departments") is not None and not filters["departments"]:
            return
        sent = 0
        cursor = before
        while sent < limit:
            want = min(PAGE, limit - sent)
            page = c.alerts.query(**filters, limit=want, before=cursor)
            if not page:
                return
            buf.seek(0)
            buf.truncate()
            for a in page:
                if principal.sees_alert(a):  # defence in depth, as the JSON list
                    w.writerow(row(for_principal(a.to_api(), principal)))
                    sent += 1
            yield buf.getvalue()
            cursor = page[-1].id
            if len(page) < want:
                return

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="alerts-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
