"""Plate reads: where and when a plate was seen (plates:query; every query audited)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from serve_app.api.deps import ctx, parse_time_range
from serve_app.auth import PlateQuerier

router = APIRouter(prefix="/api/plates", tags=["plates"])

_PLATE_RE = re.compile(r"^[\w·.\- ]{1,20}$")


@router.get("/{plate}/reads", summary="Cameras and times where a plate was read")
def plate_reads(
    principal: PlateQuerier,
    plate: str,
    request: Request,
    from_: str | None = Query(None, alias="from", description="Unix s or ISO 8601"),
    to: str | None = Query(None, description="Unix s or ISO 8601"),
    reason: str = Query("", max_length=500, description="Why (recorded in the audit log)"),
) -> dict[str, Any]:
    """The plate's trajectory, oldest first."""
    if not _PLATE_RE.match(plate):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "plate: 1-20 plate characters")
    c = ctx(request)
    since, until = parse_time_range(from_, to, ("from", "to"))
    c.audit.append(actor=principal.name, action="plates.query", target=plate, reason=reason)
    reads = c.plates.query(plate, since, until)
    return {"plate": plate, "reads": reads}
