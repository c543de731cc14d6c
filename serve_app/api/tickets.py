"""One-time WebSocket tickets for browsers (which cannot set an Authorization header)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serve_app.api.deps import ctx
from serve_app.auth import TICKET_TTL_S, Reader

router = APIRouter(prefix="/api/ws-tickets", tags=["websocket"])


@router.post("", summary="A one-time ticket for WS /ws?ticket=")
def issue_ticket(
    principal: Reader,
    request: Request,
) -> dict[str, object]:
    """Valid for 30 s and one handshake; carries the caller's principal and scope."""
    return {"ticket": ctx(request).resolver.issue_ticket(principal), "expires_in": TICKET_TTL_S}
