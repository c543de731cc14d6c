"""Field reports and feedback photos (multipart/form-data uploads).

* ``POST /api/reports`` (``reports:write``): ``photos`` (1..``reports.max_photos`` JPEG/PNG
  files), ``latitude``, ``longitude``, ``kind`` (one of ``reports.kinds``), ``note``.
  Raises an alert with ``source: "report"``, or joins an open one of the same kind nearby
  (201 either way; ``created`` says which).
* ``GET /api/reports?mine=1`` (``reports:write``): the caller's own reports and their states.
* ``POST /api/alerts/{id}/feedback`` (``alerts:dispatch``, the alert in scope): ``photos``
  (the "after" pictures) and ``note``: an event ``action: "feedback"`` on the timeline.

Bad input answers a 4xx saying what is wrong and stores nothing: every photo is checked and
re-encoded (:mod:`serve_app.photos`) before the first byte is written.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from citysight.config import ReportsConfig
from citysight.contracts import AlertKind, EvidenceRef, Location
from serve_app.api.deps import NOT_FOUND, ctx, scoped_alert
from serve_app.auth import Dispatcher, ReportWriter
from serve_app.photos import CleanPhoto, PhotoError, clean_photo
from serve_app.plate_privacy import for_principal
from serve_app.store.lifecycle import AlertNotFound

logger = logging.getLogger(__name__)

router = APIRouter(tags=["reports"])

MAX_NOTE = 2000
MAX_FIELDS = 8
_FORM_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["photos", "latitude", "longitude", "kind"],
                    "properties": {
                        "photos": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more JPEG/PNG photos",
                        },
                        "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                        "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                        "kind": {"type": "string", "description": "One of reports.kinds"},
                        "note": {"type": "string", "maxLength": MAX_NOTE},
                    },
                }
            }
        },
    }
}
_FEEDBACK_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["photos"],
                    "properties": {
                        "photos": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                        "note": {"type": "string", "maxLength": MAX_NOTE},
                    },
                }
            }
        },
    }
}


def _bad(detail: str, code: int = status.HTTP_422_UNPROCESSABLE_CONTENT) -> HTTPException:
    return HTTPException(code, detail)


def _form(request: Request, cfg: ReportsConfig) -> Any:
    """The multipart form (an async context manager that deletes the spooled files), bounded
    in parts and field sizes (Starlette answers 400 when it is malformed)."""
    ctype = request.headers.get("content-type", "").lower()
    if not ctype.startswith("multipart/form-data"):
        raise _bad(
            "expected multipart/form-data (photos as files, the other fields as text)",
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        )
    return request.form(max_files=cfg.max_photos, max_fields=MAX_FIELDS, max_part_size=64 * 1024)


def _text(form: FormData, name: str, *, required: bool = False, max_len: int = 100) -> str:
    values = form.getlist(name)
    if len(values) > 1:
        raise _bad(f"{name}: given {len(values)} times, expected once")
    value = values[0] if values else None
    if value is not None and not isinstance(value, str):
        raise _bad(f"{name}: expected a text field, got a file")
    text = (value or "").strip()
    if required and not text:
        raise _bad(f"{name}: required")
    if len(text) > max_len:
        raise _bad(f"{name}: at most {max_len} characters, got {len(text)}")
    return text


def _coordinate(form: FormData, name: str, lo: float, hi: float) -> float:
    text = _text(form, name, required=True, max_len=40)
    try:
        v = float(text)
    except ValueError:
        raise _bad(f"{name}: not a number: {text!r}") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise _bad(f"{name}: must be a finite number between {lo:g} and {hi:g}, got {text!r}")
    return v


async def _photos(form: FormData, cfg: ReportsConfig) -> list[CleanPhoto]:
    """Every ``photos`` part, checked and re-encoded (nothing stored yet)."""
    unknown = sorted(set(form.keys()) - {"photos", "latitude", "longitude", "kind", "note"})
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(unknown)[:200]}")
    parts = form.getlist("photos")
    if not parts:
        raise _bad("photos: at least one photo is required")
    if len(parts) > cfg.max_photos:
        raise _bad(f"photos: at most {cfg.max_photos}, got {len(parts)}")
    out = []
    for i, part in enumerate(parts):
        if not isinstance(part, UploadFile):
            raise _bad(f"photos[{i}]: expected a file, got a text field")
        data = await part.read(cfg.max_photo_bytes + 1)
        try:
            out.append(
                await run_in_threadpool(
                    clean_photo, data, part.content_type, cfg, name=f"photos[{i}]"
                )
            )
        except PhotoError as exc:
            raise _bad(str(exc), exc.status) from None
    return out


@router.post(
    "/api/reports",
    summary="Send a field report (photos, position, kind, note)",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_FORM_DOC,
)
async def create_report(principal: ReportWriter, request: Request) -> dict[str, Any]:
    """Raise an alert from a field report, or add it to an open alert of the same kind nearby."""
    c = ctx(request)
    rc = c.cfg.reports
    t0 = time.perf_counter()
    async with _form(request, rc) as form:
        lat = _coordinate(form, "latitude", -90, 90)
        lon = _coordinate(form, "longitude", -180, 180)
        kind_text = _text(form, "kind", required=True)
        allowed = [k.value for k in rc.kinds]
        if kind_text not in allowed:
            raise _bad(
                f"kind: {kind_text[:40]!r} is not reportable; expected one of {', '.join(allowed)}"
            )
        note = _text(form, "note", max_len=MAX_NOTE)
        photos = await _photos(form, rc)
    result = await run_in_threadpool(
        c.reports.submit,
        reporter=principal.name,
        kind=AlertKind(kind_text),
        location=Location(lat=lat, lon=lon),
        note=note,
        photos=photos,
    )
    logger.info(
        "report by %s: %s alert %s (%d photo(s), %.0f ms)",
        principal.name,
        "raised" if result.created else "joined",
        result.alert.id,
        len(photos),
        (time.perf_counter() - t0) * 1000,
    )
    return {
        "alert_id": result.alert.id,
        "created": result.created,
        "state": result.alert.state.value,
        "kind": result.alert.kind.value,
        "department": result.alert.department,
        "photos": result.photo_ids,
    }


@router.get("/api/reports/config", summary="What a field report may carry (for the phone page)")
def report_config(principal: ReportWriter, request: Request) -> dict[str, Any]:
    """Reportable kinds and photo limits (``reports``)."""
    rc = ctx(request).cfg.reports
    return {
        "kinds": [k.value for k in rc.kinds],
        "max_photos": rc.max_photos,
        "max_photo_bytes": rc.max_photo_bytes,
        "max_note_chars": MAX_NOTE,
    }


@router.get("/api/reports", summary="The caller's own field reports and their states")
def my_reports(
    principal: ReportWriter,
    request: Request,
    mine: bool = Query(True, description="Only the caller's own reports (the only listing here)"),
    limit: int = Query(50, ge=1, le=200),
) -> list[dict[str, Any]]:
    """Newest first. Everyone else's reports are alerts: ``GET /api/alerts`` (alerts:read)."""
    if not mine:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "only mine=1 is served here; other reports are alerts (GET /api/alerts)",
        )
    return ctx(request).reports.mine(principal.name, limit)


@router.post(
    "/api/alerts/{alert_id}/feedback",
    summary="Feedback photos on an alert (the 'after' picture)",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_FEEDBACK_DOC,
)
async def feedback(principal: Dispatcher, alert_id: str, request: Request) -> dict[str, Any]:
    """Add photos (and a note) to an alert in the caller's scope: an event ``feedback``."""
    c = ctx(request)
    alert = await run_in_threadpool(scoped_alert, c, alert_id, principal)
    rc = c.cfg.reports
    async with _form(request, rc) as form:
        for bad in ("latitude", "longitude", "kind"):
            if bad in form:
                raise _bad(f"unknown field(s): {bad}")
        note = _text(form, "note", max_len=MAX_NOTE)
        photos = await _photos(form, rc)
    now = time.time()
    ids = [f"f{int(now * 1000):x}-{i}" for i in range(len(photos))]

    def store() -> Any:
        refs = []
        try:
            for pid, photo in zip(ids, photos, strict=True):
                key = c.evidence.put_item(alert.id, pid, photo.jpeg)
                refs.append(EvidenceRef(key=key, id=pid, source="feedback", frame_time=now))
            return c.alerts.add_event(
                alert.id, actor=principal.name, action="feedback", note=note, evidence=refs
            )
        except BaseException:
            c.evidence.delete_items(alert.id, ids)
            raise

    try:
        updated = await run_in_threadpool(store)
    except AlertNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None
    return {"alert": for_principal(updated.to_api(), principal), "photos": ids}
