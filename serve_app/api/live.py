"""``WS /ws/live/{camera_id}``: watch a camera live (fragmented MP4 for Media Source Extensions).

Protocol (see docs/video.md):

* Handshake as ``WS /ws``: ``Authorization: Bearer <token>`` or the subprotocols
  ``["citysight-v1", "ticket.<one-time ticket>"]``. The principal needs ``alerts:read`` and
  ``video:live`` (else 403/4403), and the camera must be in its department scope: a camera
  outside it answers exactly like a missing one (404/4404), before any byte.
* Caps: ``services.live.max_viewers_per_camera`` across replicas (429/4429) and
  ``max_viewers_per_node`` per replica (503/4503). Every session is audited (``live.start``
  before the first byte, ``live.end`` with duration and bytes); an audit failure refuses the
  session (fail closed).
* Server messages: text ``{"type": "init", "mime": "video/mp4; codecs=\\"avc1...\\"",
  "width", "height", "fps"}``, then binary: the init segment, then one fragment per frame
  starting at a keyframe. A new ``init`` text means new stream parameters: reset the player.
* Close codes: 4008 too slow (queue overflow), 4401 token revoked, 4403 principal changed,
  4501 live view unavailable for this camera (NVDEC decode, a codec browsers cannot play;
  the reason says which), 4504 no video within ``start_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Final, cast

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from citysight import keys, redisconn
from citysight.config import CameraConfig, CitysightConfig, LiveService, Scope
from citysight.contracts import AlertKind
from serve_app.auth import Principal
from serve_app.ws.endpoint import SUBPROTOCOL, TICKET_PREFIX, _authenticate, _deny
from serve_app.ws.livecast import Channel, Viewer

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from serve_app.http import ApiContext

logger = logging.getLogger(__name__)

router = APIRouter()

LIVE_PATH: Final = "/ws/live/{camera_id}"
_SEND_TIMEOUT_S: Final = 10.0

_ADMIT_LUA: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


def live_url(cfg: CitysightConfig, camera_id: str) -> str | None:
    """The WebSocket path of a camera's live view (``None`` when live view is off)."""
    return LIVE_PATH.format(camera_id=camera_id) if cfg.services.live.enabled else None


def camera_departments(cfg: CitysightConfig, camera: CameraConfig) -> set[str]:
    """Departments whose scope includes a camera: those any alert of it is routed to."""
    depts = {cfg.route(kind, camera.jurisdiction) for kind in AlertKind}
    return {d for d in depts if d}


def camera_in_scope(cfg: CitysightConfig, camera: CameraConfig, principal: Principal) -> bool:
    """Whether ``principal`` may watch ``camera``: its department receives the camera's alerts
    and, for a jurisdiction-scoped principal, the camera lies in its jurisdiction."""
    in_place = principal.sees_place(cfg.jurisdiction_path(cfg.place(camera)))
    return in_place and principal.sees_any(camera_departments(cfg, camera))


class LiveHub:
    """This replica's live channels, viewer count and counters."""

    def __init__(self, redis_url: str, cfg: LiveService, counters: dict[str, int]) -> None:
        self.redis_url = redis_url
        self.cfg = cfg
        self.counters = counters
        self.channels: dict[str, Channel] = {}
        self.viewers = 0
        self._r: Redis | None = None

    def gauges(self) -> dict[str, int]:
        """Open viewers and watched cameras now (for the metrics snapshot)."""
        return {"viewers": self.viewers, "channels": len(self.channels)}

    @property
    def redis(self) -> Redis:
        """Async Redis client with bytes replies (packets are binary)."""
        if self._r is None:
            self._r = redisconn.connect_async(self.redis_url)
        return self._r

    def join(self, camera_id: str, viewer: Viewer) -> None:
        """Attach a viewer to its camera's channel (created on the first viewer)."""
        ch = self.channels.get(camera_id)
        if ch is None:
            ch = Channel(camera_id, self.redis, self.cfg, self.counters, self._forget)
            self.channels[camera_id] = ch
        ch.add(viewer)

    def leave(self, camera_id: str, viewer: Viewer) -> None:
        """Detach a viewer."""
        ch = self.channels.get(camera_id)
        if ch is not None:
            ch.remove(viewer)

    def _forget(self, ch: Channel) -> None:
        if self.channels.get(ch.camera_id) is ch:
            del self.channels[ch.camera_id]

    async def admit(self, camera_id: str, session: str) -> bool:
        """Reserve one of the camera's viewer slots (across replicas)."""
        now_ms = int(time.time() * 1000)
        stale_ms = int(self.cfg.interest_ttl_s * 2000) + 5000
        ok = await cast(
            "Any",
            self.redis.eval(
                _ADMIT_LUA,
                1,
                keys.live_viewers_key(camera_id),
                now_ms,
                now_ms - stale_ms,
                self.cfg.max_viewers_per_camera,
                session,
                stale_ms * 2,
            ),
        )
        return bool(ok)

    async def touch(self, camera_id: str, session: str) -> None:
        """Keep a session's slot (a crashed replica's slots expire)."""
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zadd(
                keys.live_viewers_key(camera_id), {session: int(time.time() * 1000)}
            )

    async def release(self, camera_id: str, session: str) -> None:
        """Give a slot back."""
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zrem(keys.live_viewers_key(camera_id), session)

    async def close(self) -> None:
        """Stop every channel and close the client."""
        for ch in list(self.channels.values()):
            ch.stop()
        if self._r is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._r.aclose()
            self._r = None


def new_counters() -> dict[str, int]:
    """The live counters of one replica (shared by its hub and its metrics)."""
    return defaultdict(int)


@router.websocket(LIVE_PATH)
async def live_view(ws: WebSocket, camera_id: str) -> None:
    """One live viewer (see the module docstring for the protocol)."""
    ctx: ApiContext = ws.app.state.ctx
    hub: LiveHub = ctx.live
    counters = hub.counters
    if "ticket" in ws.query_params:
        await _deny(
            ws, 400, f"send the ticket as subprotocol {TICKET_PREFIX}<ticket>, not ?ticket="
        )
        return
    principal = await _authenticate(ws, ctx.resolver)
    if principal is None:
        counters["refused_auth"] += 1
        await _deny(ws, 401, "authentication required: Bearer token or a ticket subprotocol")
        return
    missing = [str(s) for s in (Scope.ALERTS_READ, Scope.VIDEO_LIVE) if not principal.has(s)]
    if missing:
        counters["refused_scope"] += 1
        await _deny(ws, 403, f"missing scope: {', '.join(missing)}")
        return
    try:
        camera = (
            await run_in_threadpool(ctx.cameras.get, camera_id) if len(camera_id) <= 64 else None
        )
    except (RedisError, OSError):
        await _deny(ws, 503, "storage unavailable, retry later", auth=False)
        return
    if camera is None or not camera_in_scope(ctx.cfg, camera, principal):
        # A camera of another department answers like a missing one: ids cannot be probed.
        counters["refused_scope"] += 1
        await _deny(ws, 404, "camera not found", auth=False)
        return
    cfg = ctx.cfg.services.live
    if not cfg.enabled:
        await _deny(ws, 503, "live view is disabled (services.live.enabled)", auth=False)
        return
    if hub.viewers >= cfg.max_viewers_per_node:
        counters["refused_node_cap"] += 1
        await _deny(
            ws,
            503,
            f"live viewer capacity of this server reached ({cfg.max_viewers_per_node})",
            auth=False,
        )
        return
    session = f"{ctx.metrics.replica}:{uuid.uuid4().hex[:16]}"
    hub.viewers += 1  # reserved now: concurrent handshakes cannot overshoot the node cap
    try:
        await _serve(ws, ctx, hub, camera_id, principal, session)
    finally:
        hub.viewers -= 1


async def _serve(
    ws: WebSocket,
    ctx: ApiContext,
    hub: LiveHub,
    camera_id: str,
    principal: Principal,
    session: str,
) -> None:
    cfg = hub.cfg
    counters = hub.counters
    try:
        admitted = await hub.admit(camera_id, session)
    except (RedisError, OSError):
        await _deny(ws, 503, "storage unavailable, retry later", auth=False)
        return
    if not admitted:
        counters["refused_camera_cap"] += 1
        await _deny(
            ws,
            429,
            f"camera {camera_id} has its maximum of {cfg.max_viewers_per_camera} live viewers",
            auth=False,
        )
        return
    started = time.time()
    try:
        # Audited before the first byte: no record, no video.
        await run_in_threadpool(
            ctx.audit.append,
            actor=principal.name,
            action="live.start",
            target=camera_id,
            reason=f"session {session}",
        )
    except Exception as exc:
        logger.warning("live view of %s refused: audit unavailable (%r)", camera_id, exc)
        await hub.release(camera_id, session)
        await _deny(ws, 503, "audit log unavailable: live view refused", auth=False)
        return
    viewer = Viewer(principal.name, asyncio.Queue(maxsize=cfg.viewer_queue_fragments))
    try:
        offered = ws.scope.get("subprotocols") or ()
        await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        counters["sessions"] += 1
        hub.join(camera_id, viewer)
        await _pump(ws, ctx, hub, camera_id, principal, session, viewer)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        hub.leave(camera_id, viewer)
        counters["bytes"] += viewer.bytes_sent
        ended = time.time()
        detail = {
            "session": session,
            "started_at": round(started, 3),
            "ended_at": round(ended, 3),
            "seconds": round(ended - started, 3),
            "bytes": viewer.bytes_sent,
            "close": viewer.close_code or 1000,
        }
        # Submitted to a thread before any await: a cancelled session (server shutdown,
        # client gone mid-handshake) still gets its end record.
        end = asyncio.get_running_loop().run_in_executor(
            None,
            functools.partial(
                ctx.audit.append,
                actor=principal.name,
                action="live.end",
                target=camera_id,
                reason=json.dumps(detail, separators=(",", ":")),
            ),
        )
        try:
            await asyncio.shield(end)
        except Exception as exc:
            logger.warning("live.end of %s not audited: %r", session, exc)
        finally:
            await hub.release(camera_id, session)


async def _pump(
    ws: WebSocket,
    ctx: ApiContext,
    hub: LiveHub,
    camera_id: str,
    principal: Principal,
    session: str,
    viewer: Viewer,
) -> None:
    """Send the viewer's queue; watch for its disconnect and for a revoked token."""
    receiver = asyncio.create_task(_drain_inbound(ws))
    checker = asyncio.create_task(_recheck(ctx, hub, camera_id, principal, session, viewer))
    try:
        while True:
            get = asyncio.ensure_future(viewer.queue.get())
            done, _ = await asyncio.wait({get, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                get.cancel()
                break
            item = get.result()
            if item is None:
                break
            try:
                if isinstance(item, str):
                    await asyncio.wait_for(ws.send_text(item), _SEND_TIMEOUT_S)
                else:
                    await asyncio.wait_for(ws.send_bytes(item), _SEND_TIMEOUT_S)
            except TimeoutError:
                hub.counters["dropped_slow"] += 1
                viewer.close_code = viewer.close_code or 4008
                viewer.close_reason = viewer.close_reason or "viewer too slow: send timed out"
                break
            viewer.bytes_sent += len(item)
        code = viewer.close_code or 1000
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=code, reason=viewer.close_reason[:120]), 2.0)
    finally:
        for task in (receiver, checker):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _drain_inbound(ws: WebSocket) -> None:
    """Read (and ignore) client messages until the client goes away."""
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return


async def _recheck(
    ctx: ApiContext,
    hub: LiveHub,
    camera_id: str,
    principal: Principal,
    session: str,
    viewer: Viewer,
) -> None:
    """Keep the viewer slot and re-read the principal: a revoked token ends the session."""
    period = min(ctx.cfg.services.http.ws_recheck_s, hub.cfg.interest_ttl_s / 3)
    while True:
        await asyncio.sleep(period)
        await hub.touch(camera_id, session)
        if not principal.key:
            continue
        try:
            current = (await run_in_threadpool(ctx.resolver.lookup, [principal.key]))[principal.key]
        except (RedisError, OSError):
            continue
        if current is None:
            hub.counters["closed_revoked"] += 1
            viewer.end(4401, "token revoked")
            return
        if current != principal or not current.has(Scope.VIDEO_LIVE):
            hub.counters["closed_revoked"] += 1
            viewer.end(4403, "principal changed")
            return
