"""Alert evidence clips (MP4), with the same privacy rules as the snapshots.

* ``GET /api/alerts/{id}/clip``: the face-blurred copy (every face of every frame blurred;
  503 when faces cannot be detected right now: nothing is served unblurred as "redacted").
  HTTP ``Range`` requests (206 / 416) so browsers can seek; the ``ETag`` is the sha256 of
  the original, suffixed with the rendering's fingerprint for the blurred copy.
* ``POST /api/alerts/{id}/clip/unredacted`` with ``{"reason": "..."}``: the original, for
  ``evidence:unredacted``, audited (who, what, when, why) before the bytes leave; its
  ``ETag`` is the sha256 recorded on the alert.
* While the clip is being written: ``202`` with the clip record (``state: pending``), and
  while its face-blurred copy is being made (the first view: every frame goes through the
  face detector) ``202`` with ``state: redacting``; with
  no clip (unavailable, failed, expired, never requested): ``404`` with the state and the
  reason. Out-of-scope alerts answer 404 exactly like missing ones.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse

from citysight.clips import ClipRecord, ClipState, ClipStoreError
from serve_app.api.deps import ctx, scoped_alert
from serve_app.api.evidence import UnredactRequest, unredacted_access
from serve_app.auth import Reader
from serve_app.store.clips import ClipRendering, ClipService, ClipUnavailable
from serve_app.store.evidence import RedactionUnavailable

router = APIRouter(prefix="/api/alerts", tags=["evidence"])

_MP4: dict[int | str, dict[str, Any]] = {
    200: {"content": {"video/mp4": {}}, "description": "The whole clip"},
    206: {"content": {"video/mp4": {}}, "description": "The requested byte range"},
    202: {"description": "The clip is still being written (JSON clip record)"},
    404: {"description": "No clip: unavailable, failed, expired, or no such alert"},
    416: {"description": "The range lies outside the clip"},
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``(start, end)`` (inclusive) of a single ``Range: bytes=`` header.

    Returns ``None`` for no header, another unit or several ranges (the whole file is then
    served, as RFC 9110 allows).

    Raises:
        HTTPException: 416 when the range is malformed or lies outside the file.
    """
    if not header:
        return None
    h = header.strip()
    if not h.startswith("bytes=") or "," in h:
        return None
    m = _RANGE.match(h.replace(" ", ""))
    bad = HTTPException(
        status.HTTP_416_RANGE_NOT_SATISFIABLE,
        f"range {header[:60]!r} is not satisfiable for a clip of {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )
    if m is None or (not m.group(1) and not m.group(2)):
        raise bad
    first, last = m.group(1), m.group(2)
    if not first:  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise bad
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise bad
    return start, end


def _state_response(
    rec: ClipRecord | None, message: str, *, rendering: bool = False
) -> JSONResponse:
    body: dict[str, Any] = {"detail": message}
    if rec is None:
        body["clip"] = {"state": "none", "reason": message}
        return JSONResponse(body, status.HTTP_404_NOT_FOUND)
    body["clip"] = rec.to_api()
    if rendering:  # written, its face-blurred copy not yet: come back shortly
        body["clip"]["state"] = "redacting"
    if body["clip"]["state"] in (ClipState.PENDING.value, "redacting"):
        return JSONResponse(
            body,
            status.HTTP_202_ACCEPTED,
            headers={"Retry-After": "2", "Cache-Control": "no-store"},
        )
    return JSONResponse(body, status.HTTP_404_NOT_FOUND)


def _serve(
    svc: ClipService,
    name: str,
    size: int,
    etag: str,
    range_header: str | None,
    if_none_match: str | None,
    *,
    redacted: bool,
) -> Response:
    quoted = f'"{etag}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": quoted,
        "Cache-Control": "private, no-store",
        "X-Redacted": "true" if redacted else "false",
    }
    if if_none_match and quoted in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    rng = parse_range(range_header, size)
    start, end = rng if rng is not None else (0, size - 1)
    try:
        data = svc.read(name, start, end) if size else b""
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the clip file is gone") from None
    except ClipStoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    if rng is None:
        return Response(data, media_type="video/mp4", headers=headers)
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(
        data, status_code=status.HTTP_206_PARTIAL_CONTENT, media_type="video/mp4", headers=headers
    )


def _service(request: Request) -> ClipService:
    return ctx(request).clips


@router.get(
    "/{alert_id}/clip",
    summary="Evidence clip of an alert (MP4, faces blurred; Range requests)",
    responses=_MP4,
    response_class=Response,
)
def clip(
    principal: Reader,
    alert_id: str,
    request: Request,
    range_header: str | None = Header(None, alias="Range"),
    if_none_match: str | None = Header(None, alias="If-None-Match"),
) -> Response:
    """The face-blurred clip (rendered once per clip, then served from the clip store)."""
    c = ctx(request)
    alert = scoped_alert(c, alert_id, principal)
    svc = _service(request)
    try:
        rec = svc.ready(alert)
        name, size, etag = svc.redacted(rec)
    except ClipRendering as exc:
        return _state_response(exc.record, str(exc), rendering=True)
    except ClipUnavailable as exc:
        return _state_response(exc.record, str(exc))
    except RedactionUnavailable:
        # Fail closed: without a face detector no video is served as redacted.
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "clip redaction unavailable: faces cannot be detected right now, so no "
            "redacted clip is served (see the redaction component of /health)",
            headers={"Retry-After": "30"},
        ) from None
    except ClipStoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return _serve(svc, name, size, etag, range_header, if_none_match, redacted=True)


@router.post(
    "/{alert_id}/clip/unredacted",
    summary="Unredacted evidence clip (evidence:unredacted, audited with a reason)",
    responses=_MP4,
    response_class=Response,
)
def unredacted_clip(
    principal: Reader,
    alert_id: str,
    body: UnredactRequest,
    request: Request,
    range_header: str | None = Header(None, alias="Range"),
) -> Response:
    """The original clip; the audit record is written before the bytes leave."""
    c = ctx(request)
    alert, reason = unredacted_access(c, alert_id, principal, body, "the unredacted clip")
    svc = _service(request)
    try:
        rec = svc.ready(alert)
        name, size = svc.original(rec)
    except ClipUnavailable as exc:
        return _state_response(exc.record, str(exc))
    except ClipStoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    # Audit before the bytes leave: a failed audit write means no unredacted view.
    c.audit.append(actor=principal.name, action="clip.unredacted", target=alert_id, reason=reason)
    return _serve(svc, name, size, rec.sha256, range_header, None, redacted=False)
