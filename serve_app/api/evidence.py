"""Alert evidence (JPEG): faces blurred unless the caller may and asks to see them."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from citysight.config import Scope
from serve_app.api.deps import ctx, scoped_alert
from serve_app.auth import Reader

router = APIRouter(prefix="/api/alerts", tags=["evidence"])


@router.get(
    "/{alert_id}/evidence",
    summary="Evidence snapshot of an alert",
    responses={200: {"content": {"image/jpeg": {}}}},
    response_class=Response,
)
def evidence(
    principal: Reader,
    alert_id: str,
    request: Request,
    unredacted: bool = Query(False, description="Unblurred faces (needs evidence:unredacted)"),
    reason: str | None = Query(
        None, max_length=500, description="Why the unredacted view is needed (audited)"
    ),
) -> Response:
    """Redacted JPEG by default; the unredacted one is audited (who, what, when, why)."""
    c = ctx(request)
    alert = scoped_alert(c, alert_id, principal)
    if unredacted:
        if not principal.has(Scope.EVIDENCE_UNREDACTED):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing scope: evidence:unredacted")
        if not reason or len(reason.strip()) < 3:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "reason is required (at least 3 characters) for unredacted evidence",
            )
        # Audit before the bytes leave: a failed audit write means no unredacted view.
        c.audit.append(
            actor=principal.name,
            action="evidence.unredacted",
            target=alert_id,
            reason=reason.strip(),
        )
    jpeg = c.evidence.get(alert, unredacted=unredacted)
    if jpeg is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no evidence stored for this alert")
    return Response(
        jpeg,
        media_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Redacted": "false" if unredacted else "true"},
    )
