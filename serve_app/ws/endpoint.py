"""``WS /ws``: the scoped, resumable alert feed.

Protocol:

* Handshake: ``Authorization: Bearer <token>``, or (browsers, which cannot set headers on
  a WebSocket) the subprotocols ``["citysight-v1", "ticket.<one-time ticket>"]`` (ticket
  from ``POST /api/ws-tickets``; the server selects ``citysight-v1``). Tickets are never
  taken from the URL: ``?ticket=`` is refused (400) as URLs end up in logs. Refused
  handshakes get an HTTP 401/403 response where the server supports it, otherwise a close
  (4401/4403) before the upgrade completes; either way no frame is delivered.
* Optional query filters: ``kinds``, ``cameras`` (comma-separated), ``min_severity``,
  ``bbox=min_lon,min_lat,max_lon,max_lat``; ``last_id`` resumes after a feed id.
* Client messages (JSON, at most :data:`MAX_INBOUND_BYTES`): ``{"type": "subscribe",
  "kinds": [...], "cameras": [...], "min_severity": "high", "bbox": [...]}`` replaces the
  filters (always within the principal's scope), ``{"type": "ping"}`` → ``pong``.
* Server messages: ``{"type": "alert", "id": <feed id>, "alert": {...}}``,
  ``{"type": "alert_event", "id", "event", "alert"}``, ``{"type": "camera_status", "id",
  "camera_status"}``, ``{"type": "heartbeat"}`` every ~15 s, ``{"type": "subscribed"}``,
  ``{"type": "error", "detail"}``.
* Close codes: 4008 queue overflow (client too slow), 1009 inbound message too big,
  4400 malformed query filters, 4401 token revoked (the principal is re-checked every
  ``services.http.ws_recheck_s`` and before every replay page), 4403 principal changed,
  4429 too many sockets for this principal (``ws_max_per_principal``), 4503 server at its
  WebSocket capacity (``max_websockets``) or the session could not be re-checked. Refusals
  before the upgrade answer HTTP 401/403/400/429/503 where the server supports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any, Final

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from citysight.config import Scope
from serve_app.auth import Principal, PrincipalResolver
from serve_app.ws.filters import FilterError, Subscription
from serve_app.ws.hub import Hub, SessionRefused

logger = logging.getLogger(__name__)

router = APIRouter()

MAX_INBOUND_BYTES: Final = 4096
SUBPROTOCOL: Final = "citysight-v1"
TICKET_PREFIX: Final = "ticket."
_ID_RE = re.compile(r"^\d{1,20}(-\d{1,20})?$")


async def _deny(ws: WebSocket, status: int, detail: str, *, auth: bool = True) -> None:
    """Refuse the handshake without accepting (no frame can reach the client)."""
    if auth:
        ws.app.state.ctx.metrics.ws_auth_failures += 1
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
    else:
        await ws.close(code=4000 + status, reason=detail)


def _ticket(ws: WebSocket) -> str | None:
    """The one-time ticket offered as subprotocol ``ticket.<ticket>`` (browsers)."""
    for proto in ws.scope.get("subprotocols") or ():
        if isinstance(proto, str) and proto.startswith(TICKET_PREFIX):
            return proto[len(TICKET_PREFIX) :]
    return None


async def _authenticate(ws: WebSocket, resolver: PrincipalResolver) -> Principal | None:
    auth = ws.headers.get("authorization", "")
    ticket = _ticket(ws)
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return await run_in_threadpool(resolver.resolve, token.strip())
    if ticket:
        return await run_in_threadpool(resolver.consume_ticket, ticket)
    return None


@router.websocket("/ws")
async def ws_feed(ws: WebSocket) -> None:
    """The live alert feed (see the module docstring for the protocol)."""
    ctx = ws.app.state.ctx
    if "ticket" in ws.query_params:
        # Tickets no longer travel in URLs (they end up in logs): say where they go now.
        await _deny(
            ws, 400, f"send the ticket as subprotocol {TICKET_PREFIX}<ticket>, not ?ticket="
        )
        return
    principal = await _authenticate(ws, ctx.resolver)
    if principal is None:
        await _deny(ws, 401, "authentication required: Bearer token or a ticket subprotocol")
        return
    if not principal.has(Scope.ALERTS_READ):
        await _deny(ws, 403, "missing scope: alerts:read")
        return
    try:
        sub = Subscription.parse(dict(ws.query_params))
    except FilterError as exc:
        await _deny(ws, 400, str(exc))
        return
    last_id = ws.query_params.get("last_id") or None
    if last_id is not None and not _ID_RE.match(last_id):
        await _deny(ws, 400, "last_id must be a feed id such as 1700000000000-0")
        return

    hub: Hub = ctx.hub
    await hub.start()
    try:
        session = await hub.admit(principal)
    except SessionRefused as exc:
        await _deny(ws, exc.status, exc.reason, auth=False)
        return
    except (RedisError, OSError):
        await _deny(ws, 503, "storage unavailable, retry later", auth=False)
        return
    try:
        # A browser that offered subprotocols needs one chosen back, or it drops the socket.
        offered = ws.scope.get("subprotocols") or ()
        await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    except BaseException:
        await hub.release(principal, session)
        raise
    client = hub.new_client(ws, principal, sub, replaying=last_id is not None, session=session)
    receiver = asyncio.create_task(_receive_loop(ws, hub, client))
    try:
        if last_id is not None:
            await hub.replay(client, last_id)
        client.sender = asyncio.create_task(hub.run_sender(client))
        done, _ = await asyncio.wait({client.sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                err = t.exception()
                if not isinstance(err, WebSocketDisconnect | RuntimeError):
                    logger.warning("subscriber %s failed: %r", principal.name, err)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        hub.remove(client)
        client.closed = True
        for task in (receiver, client.sender):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await hub.release(principal, session)


def _reply(hub: Hub, client: Any, msg: dict[str, Any]) -> None:
    hub.offer(client, None, json.dumps(msg), 0.0)


async def _receive_loop(ws: WebSocket, hub: Hub, client: Any) -> None:
    """Handle client messages: subscribe, ping; enforce the inbound size limit."""
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return
        raw = msg.get("text")
        if raw is None:
            raw_b = msg.get("bytes") or b""
            if len(raw_b) > MAX_INBOUND_BYTES:
                await ws.close(code=1009, reason="message too big")
                return
            raw = raw_b.decode("utf-8", "replace")
        if len(raw) > MAX_INBOUND_BYTES:
            await ws.close(code=1009, reason="message too big")
            return
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            _reply(hub, client, {"type": "error", "detail": "messages must be JSON objects"})
            continue
        mtype = data.get("type")
        if mtype == "ping":
            _reply(hub, client, {"type": "pong"})
        elif mtype == "subscribe":
            try:
                client.sub = Subscription.parse(data)
            except FilterError as exc:
                _reply(hub, client, {"type": "error", "detail": str(exc)})
                continue
            s = client.sub
            _reply(
                hub,
                client,
                {
                    "type": "subscribed",
                    "department": client.principal.department,
                    "jurisdiction": client.principal.jurisdiction,
                    "kinds": sorted(s.kinds) if s.kinds is not None else None,
                    "cameras": sorted(s.cameras) if s.cameras is not None else None,
                    "min_severity_rank": s.min_severity,
                    "bbox": list(s.bbox) if s.bbox else None,
                },
            )
        else:
            _reply(hub, client, {"type": "error", "detail": f"unknown message type {mtype!r}"})
