"""The audit log (audit:read)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from serve_app.api.deps import ctx
from serve_app.auth import AuditReader

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("", summary="Audit records, newest first, and whether the hash chain is intact")
def audit_log(
    principal: AuditReader,
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Hash-chained audit records."""
    c = ctx(request)
    return {"records": c.audit.list(limit=limit), "chain_ok": c.audit.verify()}
