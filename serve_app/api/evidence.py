"""Alert evidence (JPEG): faces blurred unless the caller may and asks to see them.

* ``GET /api/alerts/{id}/evidence``: the redacted view (every face blurred; 503 when faces
  cannot be detected right now: nothing is served unblurred as "redacted").
* ``POST /api/alerts/{id}/evidence/unredacted`` with ``{"reason": "..."}``: the original,
  for ``evidence:unredacted``, audited (who, what, when, why) before the bytes leave. The
  reason travels in the body, never in the query string (query strings end up in proxy and
  access logs); the old ``?unredacted=true&reason=`` form answers 400 saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from citysight.config import Scope
from serve_app.api.deps import ctx, scoped_alert
from serve_app.auth import Principal, Reader
from serve_app.store.evidence import RedactionUnavailable

if TYPE_CHECKING:
    from citysight.contracts import Alert
    from serve_app.http import ApiContext

router = APIRouter(prefix="/api/alerts", tags=["evidence"])

_JPEG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/jpeg": {}}}}


class UnredactRequest(BaseModel):
    """Why the unredacted view is needed (recorded in the audit log)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        "", max_length=500, description="Why the unredacted view is needed (audited)"
    )


def redaction_unavailable() -> HTTPException:
    """Fail closed: without a face detector nothing is served as redacted."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "evidence redaction unavailable: faces cannot be detected right now, so no "
        "redacted image is served (see the redaction component of /health)",
        headers={"Retry-After": "30"},
    )


def unredacted_access(
    c: ApiContext, alert_id: str, principal: Principal, body: UnredactRequest, what: str
) -> tuple[Alert, str]:
    """The alert (in scope) and the stripped reason for an unredacted view of ``what``.

    Raises:
        HTTPException: 404 out of scope or missing, 403 without ``evidence:unredacted``,
            422 without a reason of at least 3 characters.
    """
    alert = scoped_alert(c, alert_id, principal)
    if not principal.has(Scope.EVIDENCE_UNREDACTED):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing scope: evidence:unredacted")
    reason = body.reason.strip()
    if len(reason) < 3:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"reason is required (at least 3 characters) for {what}",
        )
    return alert, reason


def _jpeg(jpeg: bytes | None, *, redacted: bool) -> Response:
    if jpeg is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no evidence stored for this alert")
    return Response(
        jpeg,
        media_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Redacted": "true" if redacted else "false"},
    )


@router.get(
    "/{alert_id}/evidence",
    summary="Evidence snapshot of an alert (faces blurred)",
    responses=_JPEG,
    response_class=Response,
)
def evidence(
    principal: Reader,
    alert_id: str,
    request: Request,
    unredacted: bool = Query(False, include_in_schema=False),
) -> Response:
    """Redacted JPEG: every face in the image blurred (detected now, plus recorded boxes)."""
    if unredacted:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "the unredacted view is POST /api/alerts/{id}/evidence/unredacted with a JSON "
            'body {"reason": "..."} (reasons are not sent in query strings)',
        )
    c = ctx(request)
    alert = scoped_alert(c, alert_id, principal)
    try:
        jpeg = c.evidence.get(alert, unredacted=False)
    except RedactionUnavailable:
        raise redaction_unavailable() from None
    return _jpeg(jpeg, redacted=True)


@router.post(
    "/{alert_id}/evidence/unredacted",
    summary="Unredacted evidence snapshot (evidence:unredacted, audited with a reason)",
    responses=_JPEG,
    response_class=Response,
)
def unredacted_evidence(
    principal: Reader,
    alert_id: str,
    body: UnredactRequest,
    request: Request,
) -> Response:
    """The original JPEG; the audit record is written before the bytes leave."""
    c = ctx(request)
    alert, reason = unredacted_access(c, alert_id, principal, body, "unredacted evidence")
    # Audit before the bytes leave: a failed audit write means no unredacted view.
    c.audit.append(
        actor=principal.name, action="evidence.unredacted", target=alert_id, reason=reason
    )
    return _jpeg(c.evidence.get(alert, unredacted=True), redacted=False)


@router.get(
    "/{alert_id}/evidence/{item_id}",
    summary="One further evidence item of an alert (report/feedback photo, re-check snapshot)",
    responses=_JPEG,
    response_class=Response,
)
def evidence_item(
    principal: Reader,
    alert_id: str,
    request: Request,
    item_id: str = Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$"),
) -> Response:
    """Redacted JPEG of item ``item_id`` (ids are in the alert's ``evidence`` list)."""
    c = ctx(request)
    alert = scoped_alert(c, alert_id, principal)
    if c.evidence.ref(alert, item_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such evidence item")
    try:
        jpeg = c.evidence.get(alert, unredacted=False, item_id=item_id)
    except RedactionUnavailable:
        raise redaction_unavailable() from None
    return _jpeg(jpeg, redacted=True)


@router.post(
    "/{alert_id}/evidence/{item_id}/unredacted",
    summary="Unredacted evidence item (evidence:unredacted, audited with a reason)",
    responses=_JPEG,
    response_class=Response,
)
def unredacted_evidence_item(
    principal: Reader,
    alert_id: str,
    body: UnredactRequest,
    request: Request,
    item_id: str = Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$"),
) -> Response:
    """The original item; the audit record is written before the bytes leave."""
    c = ctx(request)
    alert, reason = unredacted_access(c, alert_id, principal, body, "unredacted evidence")
    if c.evidence.ref(alert, item_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such evidence item")
    c.audit.append(
        actor=principal.name,
        action="evidence.unredacted",
        target=f"{alert_id}/{item_id}",
        reason=reason,
    )
    return _jpeg(c.evidence.get(alert, unredacted=True, item_id=item_id), redacted=False)
