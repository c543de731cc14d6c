"""Plate reads: where and when a plate was seen (plates:query; every query audited).

``POST /api/plates/{plate}/reads`` with a JSON body ``{"reason", "from", "to", "limit"}``:
the reason is required (a non-empty string, else 400) and goes to the audit log with the
caller and the plate before any read is returned. It travels in the body, never in the
query string (query strings end up in proxy and access logs). Reads past the retention are
never returned, and at most ``limit`` come back.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from serve_app.api.deps import ctx, parse_time_range, visible_camera_ids
from serve_app.auth import PlateQuerier
from serve_app.store.plates import MAX_QUERY_READS

router = APIRouter(prefix="/api/plates", tags=["plates"])

_PLATE_RE = re.compile(r"^[\w·.\- ]{1,20}$")


class PlateQuery(BaseModel):
    """Body of a plate query."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reason: str = Field("", max_length=500, description="Why (required; recorded in the audit log)")
    from_: str | int | float | None = Field(None, alias="from", description="Unix s or ISO 8601")
    to: str | int | float | None = Field(None, description="Unix s or ISO 8601")
    limit: int = Field(1000, ge=1, le=MAX_QUERY_READS, description="Most reads returned")


def _time_text(v: str | int | float | None) -> str | None:
    return None if v is None else str(v)


@router.post("/{plate}/reads", summary="Cameras and times where a plate was read")
def plate_reads(
    principal: PlateQuerier,
    plate: str,
    body: PlateQuery,
    request: Request,
) -> dict[str, Any]:
    """The plate's trajectory, oldest first (audited with the reason given)."""
    if not _PLATE_RE.match(plate):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "plate: 1-20 plate characters")
    reason = body.reason.strip()
    if not reason:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "reason is required: say why this plate is queried (it is audited)",
        )
    c = ctx(request)
    since, until = parse_time_range(_time_text(body.from_), _time_text(body.to), ("from", "to"))
    c.audit.append(actor=principal.name, action="plates.query", target=plate, reason=reason)
    reads = c.plates.query(plate, since, until, limit=body.limit)
    cams = visible_camera_ids(c, principal)
    if cams is not None:  # a township officer sees reads of its own cameras only
        reads = [r for r in reads if r.get("camera_id") in cams]
    return {"plate": plate, "reads": reads, "limit": body.limit}
