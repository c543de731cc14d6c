"""Fan-out of the Redis feed to this replica's WebSocket subscribers.

One reader task per ingress replica tails ``citysight:feed`` with ``XREAD BLOCK`` and offers
each entry to every local subscriber whose scope and filters match, with a non-blocking put
into the subscriber's bounded queue. A subscriber whose queue overflows is closed (code
4008) and dropped; the reader never waits on a socket, so one slow client cannot slow the
others. Several replicas each run their own reader, so fan-out works across replicas.

Resume (``?last_id=``) replays the gap with ``XRANGE`` while live entries are already being
queued; entries dropped during a long replay are re-read from Redis, and the sender skips
ids it has already sent, so the client sees every entry once, in stream order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final, cast

import redis.asyncio as aredis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket

from citysight import keys
from serve_app.api.metrics import Metrics
from serve_app.auth import Principal
from serve_app.ws.filters import Subscription, visible

logger = logging.getLogger(__name__)

CLOSE_SLOW: Final = 4008
REPLAY_PAGE: Final = 500

# XRANGE / XREAD replies of the hub's ``decode_responses=True`` (RESP2) client.
_Entries = list[tuple[str, dict[str, str]]]
_ReadReply = list[tuple[str, _Entries]]


def render(entry_id: str, fields: dict[str, str]) -> str:
    """The outbound JSON text of one feed entry (built once, shared by every client).

    ``alert`` entries carry the Alert JSON in ``d`` and become
    ``{"type": "alert", "id": ..., "alert": {...}}``; ``alert_event`` entries carry
    ``{"event": {...}, "alert": {...}}``; ``camera_status`` entries carry a CameraStatus;
    ``camera_removed`` entries become ``{"type": "camera_removed", "id", "camera_id"}``.
    """
    mtype = fields.get("type", "alert")
    d = fields.get("d", "{}")
    if mtype == "alert":
        # Avoid a parse + dump round trip on the hot path: d is already JSON.
        return f'{{"type":"alert","id":"{entry_id}","alert":{d}}}'
    try:
        payload: Any = json.loads(d)
    except ValueError:
        payload = {}
    msg: dict[str, Any] = {"type": mtype, "id": entry_id}
    if mtype == "alert_event":
        if isinstance(payload, dict) and "event" in payload:
            msg["event"] = payload.get("event")
            msg["alert"] = payload.get("alert")
        else:
            msg["event"] = payload
    elif mtype == "camera_status":
        msg["camera_status"] = payload
    elif mtype == "camera_removed":  # a deleted camera: clients drop its marker
        msg["camera_id"] = fields.get("camera_id", "")
    else:
        msg["data"] = payload
    return json.dumps(msg, separators=(",", ":"))


@dataclass(eq=False)
class Client:
    """One WebSocket subscriber of this replica."""

    ws: WebSocket
    principal: Principal
    sub: Subscription
    queue: asyncio.Queue[tuple[keys.StreamId | None, str, float]]
    replaying: bool = False
    lagged: bool = False
    last_sent: keys.StreamId = (0, 0)
    closed: bool = False
    sender: asyncio.Task[None] | None = field(default=None, repr=False)


class Hub:
    """Per-replica feed reader and subscriber registry."""

    def __init__(
        self,
        redis_url: str,
        metrics: Metrics,
        *,
        queue_size: int = 1000,
        heartbeat_s: float = 15.0,
        block_ms: int = 1000,
    ) -> None:
        """Create a hub (nothing starts until :meth:`start`).

        Args:
            redis_url: Redis holding ``citysight:feed``.
            metrics: Replica metrics.
            queue_size: Messages buffered per subscriber before it is closed as too slow.
            heartbeat_s: Interval of ``{"type": "heartbeat"}`` messages.
            block_ms: XREAD BLOCK timeout.
        """
        self.redis_url = redis_url
        self.metrics = metrics
        self.queue_size = queue_size
        self.heartbeat_s = heartbeat_s
        self.block_ms = block_ms
        self.clients: set[Client] = set()
        self._r: aredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.last_id = "0-0"
        self._pressure = False

    @property
    def redis(self) -> aredis.Redis:
        """The hub's asyncio Redis client (created on the running loop)."""
        if self._r is None:
            self._r = aredis.Redis.from_url(self.redis_url, decode_responses=True)
        return self._r

    async def start(self) -> None:
        """Start the reader and heartbeat tasks once (idempotent)."""
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(asyncio.sleep(0))]  # claim before awaiting
        try:
            last = cast(_Entries, await self.redis.xrevrange(keys.FEED_STREAM, count=1))
            self.last_id = last[0][0] if last else "0-0"
        except RedisError as exc:
            logger.warning("feed position unknown at start (%s); reading from 0", exc)
            self.last_id = "0-0"
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="citysight-feed-reader"),
            asyncio.create_task(self._heartbeat_loop(), name="citysight-ws-heartbeat"),
        ]
        logger.info("feed hub started at %s", self.last_id)

    async def stop(self) -> None:
        """Stop the tasks and close every subscriber."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        for c in list(self.clients):
            await self._close(c, 1001, "server shutting down")
        if self._r is not None:
            await self._r.aclose()
            self._r = None

    # -- subscribers ---------------------------------------------------------------------

    def new_client(
        self, ws: WebSocket, principal: Principal, sub: Subscription, *, replaying: bool
    ) -> Client:
        """Register a subscriber; live entries are queued for it from now on."""
        c = Client(ws, principal, sub, asyncio.Queue(self.queue_size), replaying=replaying)
        self.clients.add(c)
        self.metrics.ws_clients = len(self.clients)
        return c

    def remove(self, c: Client) -> None:
        """Forget a subscriber."""
        self.clients.discard(c)
        self.metrics.ws_clients = len(self.clients)

    def offer(self, c: Client, sid: keys.StreamId | None, text: str, ts_ms: float) -> None:
        """Queue a message for one subscriber without waiting; close it on overflow."""
        if c.closed:
            return
        try:
            c.queue.put_nowait((sid, text, ts_ms))
        except asyncio.QueueFull:
            if c.replaying:
                # The replay re-reads from Redis whatever live entries we drop now.
                c.lagged = True
                return
            self.metrics.ws_closed_slow += 1
            logger.info("closing slow subscriber %s: queue overflow", c.principal.name)
            asyncio.get_running_loop().create_task(
                self._close(c, CLOSE_SLOW, "queue overflow: client too slow")
            )

    async def _close(self, c: Client, code: int, reason: str) -> None:
        if c.closed:
            return
        c.closed = True
        self.remove(c)
        if c.sender is not None and c.sender is not asyncio.current_task():
            c.sender.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(c.ws.close(code=code, reason=reason), timeout=5)

    async def replay(self, c: Client, after_id: str) -> None:
        """Send every visible feed entry after ``after_id`` (exclusive), in order.

        Args:
            c: The subscriber (registered with ``replaying=True``).
            after_id: Last feed id the client saw.
        """
        cursor = after_id
        while True:
            c.lagged = False
            page = cast(
                _Entries,
                await self.redis.xrange(
                    keys.FEED_STREAM, min="(" + cursor, max="+", count=REPLAY_PAGE
                ),
            )
            for eid, fields in page:
                cursor = eid
                if not visible(c.principal, c.sub, fields):
                    continue
                sid = keys.stream_id(eid)
                await c.ws.send_text(render(eid, fields))
                c.last_sent = sid
            if not page and not c.lagged:
                break
        c.last_sent = max(c.last_sent, keys.stream_id(cursor))
        c.replaying = False

    async def run_sender(self, c: Client) -> None:
        """Drain a subscriber's queue onto its socket until it closes."""
        ws = c.ws
        metrics = self.metrics
        while not c.closed:
            sid, text, ts_ms = await c.queue.get()
            if sid is not None:
                if sid <= c.last_sent:
                    continue  # already delivered by the replay
                c.last_sent = sid
            await ws.send_text(text)
            if ts_ms:
                metrics.observe_delivery(time.time() * 1000.0 - ts_ms)

    # -- background tasks ----------------------------------------------------------------

    def dispatch(self, entry_id: str, fields: dict[str, str]) -> None:
        """Offer one feed entry to every matching local subscriber."""
        self.metrics.feed_messages += 1
        if fields.get("type") == "alert":
            self.metrics.alerts_total[fields.get("kind", "")] += 1
        if not self.clients:
            return
        sid = keys.stream_id(entry_id)
        text: str | None = None
        ts_ms = float(sid[0])
        half = self.queue_size // 2
        for c in list(self.clients):
            if visible(c.principal, c.sub, fields):
                if text is None:
                    text = render(entry_id, fields)
                self.offer(c, sid, text, ts_ms)
                if c.queue.qsize() > half:
                    self._pressure = True

    async def _read_loop(self) -> None:
        backoff = 0.2
        while True:
            try:
                resp = cast(
                    "_ReadReply | None",
                    await self.redis.xread(
                        {keys.FEED_STREAM: self.last_id}, block=self.block_ms, count=1000
                    ),
                )
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("feed read failed: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for _stream, entries in resp or []:
                for eid, fields in entries:
                    self.last_id = eid
                    try:
                        self.dispatch(eid, fields)
                    except Exception:
                        logger.exception("dispatch of feed entry %s failed", eid)
                    if self._pressure:
                        # A queue is half full: let the senders run before the next entry so
                        # a burst read in one XREAD drains into sockets instead of
                        # overflowing the bounded queues. Otherwise entries of a burst are
                        # queued together and each sender sends them in one wake-up.
                        self._pressure = False
                        await asyncio.sleep(0)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            text = json.dumps({"type": "heartbeat", "t": round(time.time(), 3)})
            for c in list(self.clients):
                if not c.replaying and not c.queue.full():
                    c.queue.put_nowait((None, text, 0.0))
