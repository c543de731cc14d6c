"""Fan-out of the Redis feed to this replica's WebSocket subscribers.

One reader task per ingress replica tails ``citysight:feed`` with ``XREAD BLOCK`` and offers
each entry to every local subscriber whose scope and filters match, with a non-blocking put
into the subscriber's bounded queue. A subscriber whose queue overflows is closed (code
4008) and dropped; the reader never waits on a socket, so one slow client cannot slow the
others. Several replicas each run their own reader, so fan-out works across replicas.

Resume (``?last_id=``) replays the gap with ``XRANGE`` while live entries are already being
queued; entries dropped during a long replay are re-read from Redis, and the sender skips
ids it has already sent, so the client sees every entry once, in stream order.

Sessions do not outlive their token: every ``recheck_s`` the principal of every open socket
is read again from Redis (no cache), and before every replay page; a revoked token's sockets
are closed with 4401, a changed principal's with 4403. Sockets are counted per principal
across replicas (sorted set ``citysight:ws-sessions:<token hash>``, refreshed by the
re-check, stale members expire) and per replica (``max_sockets``, below the replica's
``max_connections`` so HTTP keeps its share). The reader and the re-check survive any error:
each is logged, counted and backed off, and shows in :meth:`Hub.health` (``/health``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import redis.asyncio as aredis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket

from citysight import keys, redisconn
from serve_app.api.metrics import Metrics
from serve_app.auth import Principal
from serve_app.plate_privacy import redact_feed_payload, sees_plates
from serve_app.ws.filters import Subscription, visible

logger = logging.getLogger(__name__)

CLOSE_SLOW: Final = 4008
CLOSE_REVOKED: Final = 4401
"""The socket's token was revoked (its principal is gone)."""
CLOSE_CHANGED: Final = 4403
"""The socket's principal changed (role, department or scopes): reconnect."""
CLOSE_UNVERIFIED: Final = 4503
"""The principal could not be re-checked for longer than the grace period."""
REPLAY_PAGE: Final = 500
ERROR_RECENT_S: Final = 30.0
"""A loop error this recent makes the hub ``degraded`` in ``/health``."""

# Admit one socket of a principal: drop members not refreshed since ARGV[2], refuse when
# ARGV[3] remain, else add ARGV[4] scored ARGV[1]. Atomic, so two replicas cannot both let
# the cap's last slot go twice.
_ADMIT_LUA: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

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


def render_for(entry_id: str, fields: dict[str, str], *, plates: bool) -> str:
    """:func:`render` as a subscriber may see it: plate data only with ``plates:query``."""
    if plates:
        return render(entry_id, fields)
    d = fields.get("d", "{}")
    red = redact_feed_payload(fields.get("type", "alert"), d)
    return render(entry_id, fields if red is d else {**fields, "d": red})


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
    session: str = ""
    """Member of the principal's ``citysight:ws-sessions`` set (empty: not counted)."""


class SessionRefused(Exception):
    """A socket the hub does not admit: ``status`` (429, 503) and a reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _LoopHealth:
    """Errors of one background loop (``/health`` shows them)."""

    errors: int = 0
    restarts: int = 0
    last_error: str = ""
    last_error_at: float = 0.0

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = type(exc).__name__
        self.last_error_at = time.time()

    def recent(self) -> bool:
        return bool(self.last_error_at) and time.time() - self.last_error_at < ERROR_RECENT_S


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
        recheck_s: float = 5.0,
        max_sockets: int = 1500,
        max_per_principal: int = 20,
    ) -> None:
        """Create a hub (nothing starts until :meth:`start`).

        Args:
            redis_url: Redis holding ``citysight:feed``.
            metrics: Replica metrics.
            queue_size: Messages buffered per subscriber before it is closed as too slow.
            heartbeat_s: Interval of ``{"type": "heartbeat"}`` messages.
            block_ms: XREAD BLOCK timeout.
            recheck_s: Interval of the principal re-check of every open socket.
            max_sockets: Sockets this replica accepts (``services.http.websocket_limit()``).
            max_per_principal: Sockets one principal may hold across replicas.
        """
        self.redis_url = redis_url
        self.metrics = metrics
        self.queue_size = queue_size
        self.heartbeat_s = heartbeat_s
        self.block_ms = block_ms
        self.recheck_s = recheck_s
        self.max_sockets = max_sockets
        self.max_per_principal = max_per_principal
        # Unverifiable this long (Redis down), open sockets are closed: fail closed, late.
        self.recheck_grace_s = max(3 * recheck_s, 2.0)
        self.clients: set[Client] = set()
        self._r: aredis.Redis | None = None
        self._raw: aredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.last_id = "0-0"
        self._pressure = False
        self.replica = uuid.uuid4().hex[:12]
        self.reader = _LoopHealth()
        self.rechecker = _LoopHealth()
        self.closed_revoked = 0
        self.closed_changed = 0
        self.refused_principal_cap = 0
        self.refused_capacity = 0
        self.skipped_entries = 0
        self._unverified_since: float | None = None

    @property
    def redis(self) -> aredis.Redis:
        """The hub's asyncio Redis client (created on the running loop)."""
        if self._r is None:
            self._r = redisconn.connect_async(self.redis_url, decode_responses=True)
        return self._r

    async def start(self) -> None:
        """Start the reader and heartbeat tasks once (idempotent)."""
        if self._tasks:
            return
        claim = asyncio.create_task(asyncio.sleep(0))
        self._tasks = [claim]  # claim before awaiting
        try:
            last = cast(_Entries, await self.redis.xrevrange(keys.FEED_STREAM, count=1))
            self.last_id = last[0][0] if last else "0-0"
        except RedisError as exc:
            logger.warning("feed position unknown at start (%s); reading from 0", exc)
            self.last_id = "0-0"
        if self._tasks != [claim]:
            # stop() ran while the feed position was read: starting now would leave loops
            # that nothing stops (they would outlive the app and its Redis).
            return
        self._tasks = [
            asyncio.create_task(
                self._supervised(self._read_loop, self.reader), name="citysight-feed-reader"
            ),
            asyncio.create_task(
                self._supervised(self._heartbeat_loop, _LoopHealth()),
                name="citysight-ws-heartbeat",
            ),
            asyncio.create_task(
                self._supervised(self._recheck_loop, self.rechecker), name="citysight-ws-recheck"
            ),
        ]
        logger.info("feed hub started at %s", self.last_id)

    async def _supervised(self, loop: Callable[[], Awaitable[None]], h: _LoopHealth) -> None:
        """Run ``loop`` forever: whatever it raises is logged, counted, and it restarts."""
        backoff = 0.2
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a loop that dies would silently stop the feed
                h.failed(exc)
                h.restarts += 1
                logger.exception("%s failed; restarting in %.1f s", loop.__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def health(self) -> dict[str, Any]:
        """The hub's state for ``/health``: ``running``, or ``degraded`` with the reason.

        ``degraded`` while a background task is dead, or while the feed reader or the
        principal re-check failed within the last :data:`ERROR_RECENT_S` seconds.
        """
        dead = [t.get_name() for t in self._tasks if t.done()]
        reasons = []
        if dead:
            reasons.append(f"stopped: {', '.join(dead)}")
        if self.reader.recent():
            reasons.append(f"feed reader failing ({self.reader.last_error})")
        if self.rechecker.recent():
            reasons.append(f"session re-check failing ({self.rechecker.last_error})")
        return {
            "state": "degraded" if reasons else "running",
            "reason": "; ".join(reasons),
            "ws_clients": len(self.clients),
            "ws_limit": self.max_sockets,
            "feed_last_id": self.last_id,
            "feed_read_errors": self.reader.errors,
            "feed_skipped_entries": self.skipped_entries,
            "loop_restarts": self.reader.restarts + self.rechecker.restarts,
            "recheck_errors": self.rechecker.errors,
            "closed_revoked": self.closed_revoked,
            "closed_changed": self.closed_changed,
            "refused_principal_cap": self.refused_principal_cap,
            "refused_capacity": self.refused_capacity,
        }

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
        for r in (self._r, self._raw):
            if r is not None:
                await r.aclose()
        self._r = self._raw = None

    # -- sessions ------------------------------------------------------------------------

    def _session_key(self, principal: Principal) -> str:
        return keys.ws_sessions_key(principal.key or "name:" + principal.name)

    async def admit(self, principal: Principal) -> str:
        """Reserve a socket for ``principal`` before the handshake is accepted.

        Returns:
            The session id (pass it to :meth:`new_client`).

        Raises:
            SessionRefused: this replica is at ``max_sockets`` (503) or the principal holds
                ``max_per_principal`` sockets already (429).
            redis.RedisError: the principal's sockets cannot be counted.
        """
        if len(self.clients) >= self.max_sockets:
            self.refused_capacity += 1
            self.metrics.ws_refused_limit += 1
            raise SessionRefused(
                503,
                f"WebSocket capacity of this server reached ({self.max_sockets}); retry later",
            )
        session = f"{self.replica}:{uuid.uuid4().hex[:16]}"
        now_ms = int(time.time() * 1000)
        stale_ms = int(self.recheck_grace_s * 1000) + 1000
        ok = await cast(
            "Awaitable[int]",
            self.redis.eval(
                _ADMIT_LUA,
                1,
                self._session_key(principal),
                now_ms,
                now_ms - stale_ms,
                self.max_per_principal,
                session,
                stale_ms * 2,
            ),
        )
        if not int(ok):
            self.refused_principal_cap += 1
            self.metrics.ws_refused_limit += 1
            raise SessionRefused(
                429,
                f"too many WebSockets for this principal (limit {self.max_per_principal}): "
                "close one first",
            )
        return session

    async def release(self, principal: Principal, session: str) -> None:
        """Give a socket's slot back (best effort: an unrefreshed slot expires anyway)."""
        if not session:
            return
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zrem(self._session_key(principal), session)

    async def verify(self, c: Client) -> bool:
        """Re-read ``c``'s principal now; close the socket when it was revoked or changed.

        Returns:
            Whether the socket may go on.

        Raises:
            redis.RedisError: the principal cannot be read.
        """
        if not c.principal.key:
            return True  # not resolved from a token (in-process callers): nothing to re-read
        raw = await self.redis.hget(keys.PRINCIPALS, c.principal.key)
        return await self._judge(c, keys.text(raw))

    async def _judge(self, c: Client, raw: str | None) -> bool:
        current: Principal | None = None
        if raw:
            try:
                current = Principal.from_dict(json.loads(raw), c.principal.key)
            except (ValueError, KeyError, TypeError):
                current = None
        if current is None:
            self.closed_revoked += 1
            self.metrics.ws_closed_revoked += 1
            logger.info("closing WebSocket of %s: token revoked", c.principal.name)
            await self._close(c, CLOSE_REVOKED, "token revoked")
            return False
        if current != c.principal:
            self.closed_changed += 1
            self.metrics.ws_closed_revoked += 1
            logger.info("closing WebSocket of %s: principal changed", c.principal.name)
            await self._close(c, CLOSE_CHANGED, "principal changed: reconnect")
            return False
        return True

    async def recheck_all(self) -> None:
        """Re-check every open socket's principal and refresh its session slot.

        Raises:
            redis.RedisError: Redis is unreachable (the caller counts it).
        """
        clients = [c for c in self.clients if not c.closed and c.principal.key]
        if not clients:
            return
        token_keys = sorted({c.principal.key for c in clients})
        raws = cast("list[str | None]", await self.redis.hmget(keys.PRINCIPALS, token_keys))
        by_key = dict(zip(token_keys, raws, strict=True))
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for c in clients:
            if await self._judge(c, by_key.get(c.principal.key)) and c.session:
                # Re-added if an outage let it expire: an open socket always counts.
                pipe.zadd(self._session_key(c.principal), {c.session: now_ms})
                pipe.pexpire(
                    self._session_key(c.principal), int(self.recheck_grace_s * 2000) + 2000
                )
        await pipe.execute()

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_s)
            try:
                await self.recheck_all()
                self._unverified_since = None
            except (RedisError, OSError) as exc:
                self.rechecker.failed(exc)
                now = time.monotonic()
                if self._unverified_since is None:
                    self._unverified_since = now
                logger.warning("WebSocket principal re-check failed: %s", exc)
                if now - self._unverified_since > self.recheck_grace_s:
                    for c in list(self.clients):
                        await self._close(
                            c, CLOSE_UNVERIFIED, "session cannot be verified; reconnect later"
                        )

    # -- subscribers ---------------------------------------------------------------------

    def new_client(
        self,
        ws: WebSocket,
        principal: Principal,
        sub: Subscription,
        *,
        replaying: bool,
        session: str = "",
    ) -> Client:
        """Register a subscriber; live entries are queued for it from now on."""
        c = Client(
            ws, principal, sub, asyncio.Queue(self.queue_size), replaying=replaying, session=session
        )
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
            # A replay can send a day of history: the token must still be valid for each page.
            if not await self.verify(c):
                return
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
                await c.ws.send_text(render_for(eid, fields, plates=sees_plates(c.principal)))
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
        # Rendered at most twice per entry (with and without plate data), shared by clients.
        texts: dict[bool, str] = {}
        ts_ms = float(sid[0])
        half = self.queue_size // 2
        for c in list(self.clients):
            if visible(c.principal, c.sub, fields):
                plates = sees_plates(c.principal)
                text = texts.get(plates)
                if text is None:
                    text = texts[plates] = render_for(entry_id, fields, plates=plates)
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
                self.reader.failed(exc)
                self.metrics.feed_read_errors += 1
                logger.warning("feed read failed: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception as exc:
                # Not Redis: a reply this client cannot decode (an entry with bytes that are
                # not UTF-8, written by something else). Read it raw and go past it.
                self.reader.failed(exc)
                self.metrics.feed_read_errors += 1
                logger.warning("feed read failed (%s); reading past the entry raw", exc)
                await self._read_raw()
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

    async def _read_raw(self) -> None:
        """Read the next feed entries without decoding; dispatch them with bad bytes replaced."""
        if self._raw is None:
            self._raw = aredis.Redis.from_url(self.redis_url)
        resp = cast(
            "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None",
            await self._raw.xread({keys.FEED_STREAM: self.last_id}, count=100),
        )
        for _stream, entries in resp or []:
            for eid_b, raw_fields in entries:
                eid = eid_b.decode()
                self.last_id = eid
                fields = {
                    k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
                    for k, v in raw_fields.items()
                }
                try:
                    json.loads(fields.get("d", "{}"))
                    self.dispatch(eid, fields)
                except Exception:
                    self.skipped_entries += 1
                    logger.warning("feed entry %s is not valid; skipped", eid)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            text = json.dumps({"type": "heartbeat", "t": round(time.time(), 3)})
            for c in list(self.clients):
                if not c.replaying and not c.queue.full():
                    c.queue.put_nowait((None, text, 0.0))
