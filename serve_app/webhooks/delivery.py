"""Webhook delivery: a durable outbox per webhook in Redis, delivered in order, retried.

Three parts, all in :class:`WebhookService` (started by the runtime, one thread each):

* **Fan-out.** A consumer group (``citysight.keys.WEBHOOKS_GROUP``) on the feed stream reads
  every message the alert store writes, in order. For an alert event, one Lua script appends
  the rendered body to the outbox stream of each matching webhook *and* acknowledges the feed
  entry, atomically: a crash before it leaves the entry pending (read again on restart), a
  crash after it leaves it queued, so no event is lost or queued twice. Reading the feed
  (instead of writing outboxes where events are written) keeps every writer of alert events,
  present and future, covered without touching them, and the group's position survives
  restarts. A feed trimmed past the group's position (fan-out down longer than the feed's
  retention) is detected and the lost entries counted, never silent.
* **Senders.** One per webhook: it POSTs the oldest outbox entry until the receiver answers
  2xx, then deletes it (head-of-line: order holds while retrying), with exponential backoff
  and jitter, capped. After ``max_attempts`` the entry moves to the webhook's dead-letter
  stream (counted; ``citysight webhooks replay`` puts it back) and the sender moves on.
  Delivery is at least once: a crash between the receiver's 2xx and the delete sends that
  event again, with the same ``X-Citysight-Event-Id``.
* **Lease and status.** One instance delivers at a time (a renewed Redis lease); the holder
  writes the ``webhooks`` component of ``/health`` every second and enforces the alert
  retention on outboxes and dead letters (:func:`enforce_retention`).

The outbox is bounded (``max_pending``): beyond it the oldest undelivered events are dropped,
counted (``trimmed``) and logged.
"""

from __future__ import annotations

import json
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import redis

from citysight import keys, redisconn
from citysight.config import CitysightConfig, WebhookConfig
from citysight.metrics import instance_id
from citysight.outbound import Net, OutboundRefused, parse_networks, resolve_outbound
from serve_app.webhooks.payload import (
    ATTEMPT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    body_bytes,
    event_from_feed,
    matches,
    payload_for,
    sign,
)

logger = logging.getLogger(__name__)

FANOUT_CONSUMER = "fanout"
MIN_SECRET_LENGTH = 16
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)  # fmt: skip
"""Buckets of the delivery latency (event written to the receiver's 2xx), seconds."""
DEAD_MAXLEN = 100_000
LEASE_MS = 10_000
STATUS_PERIOD_S = 1.0
RETENTION_PERIOD_S = 60.0
"""How often the delivering instance drops outbox entries and dead letters past retention."""
RECENT_S = 3600.0
"""A dead-letter or a trim within this long keeps the webhook ``degraded``."""
STUCK_AFTER_S = 300.0
"""A failing webhook whose oldest pending event is older than this is ``stuck``."""
USER_AGENT = "citysight-webhooks/1"
READ_AHEAD = 32
"""Outbox entries a sender reads per round trip (delivered one at a time, in order)."""

# Append one feed entry's bodies to the matching outboxes and ack it, atomically.
# KEYS: feed, then (outbox, stats) per webhook. ARGV: group, feed id, then per webhook
# (maxlen, event id, body, feed ms). Returns the number trimmed per webhook.
_FANOUT = """
local out = {}
local n = (#KEYS - 1) / 2
for i = 1, n do
  local ob, st = KEYS[2 * i], KEYS[2 * i + 1]
  local a = 2 + (i - 1) * 4
  local before = redis.call('XLEN', ob)
  redis.call('XADD', ob, 'MAXLEN', ARGV[a + 1], '*', 'event_id', ARGV[a + 2],
             'body', ARGV[a + 3], 'feed_ms', ARGV[a + 4], 'feed_id', ARGV[2])
  local trimmed = before + 1 - redis.call('XLEN', ob)
  if trimmed > 0 then redis.call('HINCRBY', st, 'trimmed', trimmed) end
  redis.call('HINCRBY', st, 'enqueued', 1)
  out[i] = trimmed
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return out
"""

# Renew the lease when we hold it, take it when free. Returns 1 when held.
_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def resolve_secrets(cfg: CitysightConfig, env: dict[str, str] | None = None) -> dict[str, str]:
    """The signing secret of every enabled webhook, read from its environment variable.

    Also loads each ``ca_file`` once, so a missing or malformed one stops the start.

    Raises:
        ValueError: A variable is unset or shorter than :data:`MIN_SECRET_LENGTH`, or a
            ``ca_file`` does not load.
    """
    env = dict(os.environ) if env is None else env
    out: dict[str, str] = {}
    for w in cfg.webhooks:
        if not w.enabled:
            continue
        secret = env.get(w.secret_env, "")
        if not secret:
            raise ValueError(
                f"webhook {w.name!r}: secret variable {w.secret_env} is not set: export it "
                "before starting"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"webhook {w.name!r}: secret in {w.secret_env} is shorter than "
                f"{MIN_SECRET_LENGTH} characters"
            )
        out[w.name] = secret
        if w.ca_file:
            try:
                ssl.create_default_context(cafile=w.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"webhook {w.name!r}: ca_file {w.ca_file}: {exc}") from None
    return out


def _t(v: Any) -> str:
    return keys.text(v) or ""


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {_t(k): _t(v) for k, v in raw.items()}


def backoff_s(w: WebhookConfig, attempts: int, rnd: Callable[[], float] = random.random) -> float:
    """Wait after the ``attempts``-th failed attempt: exponential, capped, jittered.

    ``initial * 2**(attempts-1)`` capped at ``backoff_max_s``, times a factor in [0.5, 1)
    (so many senders do not retry in step).
    """
    base = min(w.backoff_max_s, w.backoff_initial_s * 2.0 ** max(0, attempts - 1))
    return base * (0.5 + 0.5 * rnd())


def error_class(exc: BaseException | None, status: int | None) -> str:
    """A short, stable class of a failed attempt (health detail, metrics label)."""
    if status is not None:
        return f"http_{status // 100}xx"
    if isinstance(exc, OutboundRefused):
        return "address_refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        return "tls" if "SSL" in text or "certificate" in text.lower() else "connect"
    if isinstance(exc, OSError):
        return "dns"
    if isinstance(exc, httpx.HTTPError):
        return "http_error"
    return "error"


@dataclass
class Attempt:
    """The outcome of one POST."""

    ok: bool
    status: int | None = None
    error: str = ""
    error_class: str = ""
    retry_after_s: float | None = None


@dataclass
class _Head:
    id: str
    fields: dict[str, str]
    attempts: int = 0


class Sender:
    """Delivers one webhook's outbox in order (see the module doc).

    Args:
        w: The webhook.
        secret: Its signing secret.
        r: Redis client (this thread's own).
        stop: Set to stop (waits end at once).
        active: Cleared while this instance does not hold the delivery lease.
        rnd: Jitter source (tests).
    """

    def __init__(
        self,
        w: WebhookConfig,
        secret: str,
        r: redis.Redis,
        stop: threading.Event,
        active: threading.Event,
        *,
        rnd: Callable[[], float] = random.random,
    ) -> None:
        self.w = w
        self.secret = secret
        self.r = r
        self.stop = stop
        self.active = active
        self.rnd = rnd
        self.outbox = keys.webhook_outbox(w.name)
        self.stats = keys.webhook_stats(w.name)
        self.allow: tuple[Net, ...] = parse_networks(w.allow_networks)
        # No proxies from the environment (the checked address is where we connect) and no
        # redirects (a redirect would leave it). The certificate is checked against the
        # URL's host name (sent as the TLS server name), not the pinned address.
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=w.ca_file) if w.ca_file else True
        )
        self.client = httpx.Client(
            timeout=w.timeout_s, follow_redirects=False, trust_env=False, verify=verify
        )
        self._head: _Head | None = None
        self._ahead: list[tuple[str, dict[str, str]]] = []
        self._resumed = False
        self._last_id = "0-0"

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    def _reset(self) -> None:
        # Read the outbox again from its head (a replay, a failover may have changed it).
        self._head, self._ahead, self._resumed, self._last_id = None, [], False, "0-0"

    def run(self) -> None:
        """Deliver until :attr:`stop` is set."""
        while not self.stop.is_set():
            if not self.active.is_set():
                self._reset()  # another instance may deliver meanwhile
                self.stop.wait(0.2)
                continue
            try:
                self.step()
            except redis.RedisError as exc:
                logger.warning("webhook %s: Redis error (%s); retrying", self.w.name, exc)
                self._reset()
                self.stop.wait(1.0)
            except Exception:
                logger.exception("webhook %s: sender failed; retrying", self.w.name)
                self._reset()
                self.stop.wait(1.0)

    def _load_head(self, block_ms: int) -> _Head | None:
        if self._head is not None:
            return self._head
        if not self._ahead:
            self._ahead = self._read_ahead()
            if not self._ahead:
                # Nothing queued: wait for the next entry (or the timeout).
                self.r.xread({self.outbox: self._last_id}, count=1, block=block_ms)
                self._ahead = self._read_ahead()
                if not self._ahead:
                    return None
        eid, raw = self._ahead.pop(0)
        attempts = 0
        if not self._resumed:
            # The first head after a (re)start: its failed attempts survive (stats hash).
            hid, hatt = self.r.hmget(self.stats, ["head_id", "head_attempts"])
            attempts = int(_t(hatt) or 0) if _t(hid) == eid else 0
            self._resumed = True
        self._head = _Head(eid, raw, attempts)
        return self._head

    def _read_ahead(self) -> list[tuple[str, dict[str, str]]]:
        # A few entries per round trip; the outbox only loses entries at its head (deletes
        # by this sender, trims of the oldest), so what follows them is still in order.
        start = f"({self._last_id}" if self._last_id != "0-0" else "-"
        rows = cast("list[Any]", self.r.xrange(self.outbox, min=start, max="+", count=READ_AHEAD))
        return [(_t(i), _fields(f)) for i, f in rows]

    def step(self, block_ms: int = 500) -> str:
        """Try the head of the outbox once (or wait for one).

        Returns:
            ``idle``, ``delivered``, ``retry`` or ``dead``.
        """
        head = self._load_head(block_ms)
        if head is None:
            return "idle"
        result = self.post(head)
        now = time.time()
        if result.ok:
            self._delivered(head, now)
            return "delivered"
        head.attempts += 1
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(self.stats, "attempts_failed", 1)
        pipe.hincrby(self.stats, "consecutive_failures", 1)
        pipe.hset(
            self.stats,
            mapping={
                "last_error": result.error[:300],
                "last_error_class": result.error_class,
                "last_error_at": repr(now),
                "head_id": head.id,
                "head_attempts": head.attempts,
            },
        )
        pipe.execute()
        logger.info(
            "webhook %s: event %s attempt %d of %d failed: %s",
            self.w.name, head.fields.get("event_id"), head.attempts, self.w.max_attempts,
            result.error,
        )  # fmt: skip
        if head.attempts >= self.w.max_attempts:
            self._dead(head, result, now)
            return "dead"
        wait = backoff_s(self.w, head.attempts, self.rnd)
        if result.retry_after_s is not None:
            wait = max(wait, min(result.retry_after_s, self.w.backoff_max_s))
        self.stop.wait(wait)
        return "retry"

    def post(self, head: _Head) -> Attempt:
        """One signed POST of ``head`` to the receiver (its address checked first)."""
        body = head.fields.get("body", "").encode()
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self.secret, ts, body),
            EVENT_ID_HEADER: head.fields.get("event_id", ""),
            "Idempotency-Key": head.fields.get("event_id", ""),
            ATTEMPT_HEADER: str(head.attempts + 1),
        }
        try:
            target = resolve_outbound(self.w.url, self.allow)
            headers["Host"] = target.host_header()
            ext = {"sni_hostname": target.host} if target.scheme == "https" else {}
            resp = self.client.post(
                target.pinned_url(), content=body, headers=headers, extensions=ext
            )
        except (httpx.HTTPError, OSError, ValueError) as exc:
            return Attempt(False, None, f"{type(exc).__name__}: {exc}", error_class(exc, None))
        if 200 <= resp.status_code < 300:
            return Attempt(True, resp.status_code)
        retry_after: float | None = None
        if resp.status_code in (429, 503):
            try:
                retry_after = float(resp.headers.get("Retry-After", ""))
            except ValueError:
                retry_after = None
        return Attempt(
            False,
            resp.status_code,
            f"HTTP {resp.status_code}",
            error_class(None, resp.status_code),
            retry_after,
        )

    def _delivered(self, head: _Head, now: float) -> None:
        latency = max(0.0, now - int(head.fields.get("feed_ms") or 0) / 1000.0)
        bucket = next(
            (i for i, b in enumerate(LATENCY_BUCKETS_S) if latency <= b), len(LATENCY_BUCKETS_S)
        )
        pipe = self.r.pipeline(transaction=True)
        pipe.xdel(self.outbox, head.id)
        pipe.hincrby(self.stats, "delivered", 1)
        pipe.hincrby(self.stats, f"lat_{bucket}", 1)
        pipe.hincrbyfloat(self.stats, "lat_sum", latency)
        pipe.hset(
            self.stats,
            mapping={
                "last_success_at": repr(now),
                "consecutive_failures": 0,
                "head_id": "",
                "head_attempts": 0,
            },
        )
        pipe.execute()
        self._last_id = head.id
        self._head = None

    def _dead(self, head: _Head, result: Attempt, now: float) -> None:
        pipe = self.r.pipeline(transaction=True)
        dead: dict[Any, Any] = {
            **head.fields,
            "outbox_id": head.id,
            "attempts": str(head.attempts),
            "last_error": result.error[:300],
            "dead_at": repr(now),
        }
        pipe.xadd(keys.webhook_dead(self.w.name), dead, maxlen=DEAD_MAXLEN, approximate=True)
        pipe.xdel(self.outbox, head.id)
        pipe.hincrby(self.stats, "dead_lettered", 1)
        pipe.hset(
            self.stats, mapping={"last_dead_at": repr(now), "head_id": "", "head_attempts": 0}
        )
        pipe.execute()
        logger.warning(
            "webhook %s: event %s dead-lettered after %d attempts (%s); moving on",
            self.w.name, head.fields.get("event_id"), head.attempts, result.error,
        )  # fmt: skip
        self._last_id = head.id
        self._head = None


class Fanout:
    """Reads the feed through the webhooks consumer group into the outboxes (module doc)."""

    def __init__(self, cfg: CitysightConfig, r: redis.Redis) -> None:
        self.webhooks = [w for w in cfg.webhooks if w.enabled]
        self.r = r
        self._script = r.register_script(_FANOUT)
        self._backlog = True  # first read our own pending entries (a crash left them)
        self.lost = 0
        self.lost_at = 0.0
        self._lost_at: dict[str, int] = {}

    def ensure_group(self) -> None:
        """Create the consumer group at the feed's end (a first start sends no history)."""
        try:
            self.r.xgroup_create(keys.FEED_STREAM, keys.WEBHOOKS_GROUP, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def step(self, block_ms: int = 500) -> int:
        """Queue one batch of feed entries; returns how many feed entries were handled."""
        entries: list[Any] = []
        if self._backlog:
            entries = self._read("0", None)
            if not entries:  # nothing left from before: read new entries from now on
                self._backlog = False
        if not self._backlog:
            entries = self._read(">", block_ms)
        plain: list[str] = []
        for eid_raw, raw in entries:
            eid = _t(eid_raw)
            if not raw:  # trimmed while pending
                plain.append(eid)
                continue
            if not self._queue(eid, raw):
                plain.append(eid)
        if plain:
            self.r.xack(keys.FEED_STREAM, keys.WEBHOOKS_GROUP, *plain)
        return len(entries)

    def _read(self, start: str, block_ms: int | None) -> list[Any]:
        resp = cast(
            "list[Any]",
            self.r.xreadgroup(
                keys.WEBHOOKS_GROUP, FANOUT_CONSUMER, {keys.FEED_STREAM: start}, count=200,
                block=block_ms,
            ),
        )  # fmt: skip
        return list(resp[0][1]) if resp else []

    def _queue(self, eid: str, raw: dict[Any, Any]) -> bool:
        f = _fields(raw)
        try:
            f_d: Any = json.loads(f.get("d") or "null")
        except ValueError:
            return False
        item = event_from_feed({**f, "d": f_d})
        if item is None:
            return False
        chosen = [w for w in self.webhooks if matches(w, item)]
        if not chosen:
            return False
        ks: list[str] = [keys.FEED_STREAM]
        args: list[Any] = [keys.WEBHOOKS_GROUP, eid]
        ms = eid.split("-", 1)[0]
        for w in chosen:
            p = payload_for(w, item, eid)
            ks += [keys.webhook_outbox(w.name), keys.webhook_stats(w.name)]
            args += [w.max_pending, p["id"], body_bytes(p), ms]
        trimmed = self._script(keys=ks, args=args)
        for w, n in zip(chosen, trimmed, strict=True):
            if int(n):
                logger.warning(
                    "webhook %s: outbox full (max_pending %d): dropped %d undelivered event(s)",
                    w.name, w.max_pending, int(n),
                )  # fmt: skip
        return True

    def check_gap(self) -> int:
        """Feed entries this group never read because the feed was trimmed past it.

        The feed is trimmed from its head only, so entries were lost exactly when its first
        entry lies after the group's position; their number is the entries added minus those
        the group read minus those still in the stream. Counted once (:attr:`lost`, the
        ``feed_lost`` field of ``citysight:webhooks:fanout``) and logged.

        Returns:
            How many newly lost entries this call found.
        """
        try:
            info = cast("dict[Any, Any]", self.r.xinfo_stream(keys.FEED_STREAM))
            groups = cast("list[dict[Any, Any]]", self.r.xinfo_groups(keys.FEED_STREAM))
        except redis.ResponseError:
            return 0
        mine = next((g for g in groups if _t(g.get("name")) == keys.WEBHOOKS_GROUP), None)
        first = info.get("first-entry")
        if mine is None or not first:
            return 0
        last = _t(mine.get("last-delivered-id")) or "0-0"
        if keys.stream_id(_t(first[0])) <= keys.stream_id(last):
            return 0
        read = mine.get("entries-read")
        if read is None:
            if last != "0-0":
                return 0  # Redis cannot tell (an old group): nothing to count
            read = 0
        missing = int(info.get("entries-added") or 0) - int(read) - int(info.get("length") or 0)
        new = missing - self._lost_at.get(last, 0)
        if new <= 0:
            return 0
        self._lost_at = {last: missing}
        self.lost += new
        self.lost_at = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(keys.WEBHOOKS_FANOUT, "feed_lost", new)
        pipe.hset(keys.WEBHOOKS_FANOUT, "last_lost_at", repr(self.lost_at))
        pipe.execute()
        logger.error(
            "webhooks: %d feed entries were trimmed before the fan-out read them (it was "
            "behind the feed's retention): their alert events were never queued",
            new,
        )
        return new


def enforce_retention(
    r: redis.Redis, w: WebhookConfig, ttl_s: float, now: float | None = None
) -> tuple[int, int]:
    """Drop outbox entries and dead letters of events older than ``ttl_s`` (the alert TTL).

    An event is personal data with the alert's retention: it leaves Redis when the alert does,
    delivered or not. Both streams are in event order (the outbox by construction, dead letters
    because events die in order; a replayed one may wait behind a newer one until the next
    pass), so this reads from their heads and stops at the first event still within retention.
    Undelivered events dropped here are counted in ``trimmed`` and logged.

    Returns:
        ``(outbox entries dropped, dead letters dropped)``.
    """
    cutoff_ms = int(((time.time() if now is None else now) - ttl_s) * 1000)
    dropped: list[int] = []
    for key in (keys.webhook_outbox(w.name), keys.webhook_dead(w.name)):
        n = 0
        while True:
            rows = cast("list[Any]", r.xrange(key, min="-", max="+", count=100))
            old = [_t(i) for i, f in rows if int(_fields(f).get("feed_ms") or 0) < cutoff_ms]
            if old:
                r.xdel(key, *old)
                n += len(old)
            if len(old) < len(rows) or len(rows) < 100:
                break
        dropped.append(n)
    if dropped[0]:
        r.hincrby(keys.webhook_stats(w.name), "trimmed", dropped[0])
        logger.warning(
            "webhook %s: %d undelivered event(s) older than the alert retention (%.0f s) dropped",
            w.name, dropped[0], ttl_s,
        )  # fmt: skip
    return dropped[0], dropped[1]


@dataclass
class WebhookStatus:
    """One webhook's delivery status (health detail and metrics)."""

    name: str
    state: str
    detail: dict[str, Any] = field(default_factory=dict)


def webhook_status(r: redis.Redis, w: WebhookConfig, now: float | None = None) -> WebhookStatus:
    """Status of webhook ``w`` from Redis (see docs/integrations.md for the states)."""
    now = time.time() if now is None else now
    if not w.enabled:
        return WebhookStatus(w.name, "disabled", {})
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(keys.webhook_stats(w.name))
    pipe.xlen(keys.webhook_outbox(w.name))
    pipe.xrange(keys.webhook_outbox(w.name), min="-", max="+", count=1)
    pipe.xlen(keys.webhook_dead(w.name))
    raw, pending, head, dead = pipe.execute()
    st = _fields(raw)

    def num(k: str) -> float:
        try:
            return float(st.get(k) or 0)
        except ValueError:
            return 0.0

    oldest_age = None
    if head:
        oldest_age = max(0.0, now - int(_fields(head[0][1]).get("feed_ms") or 0) / 1000.0)
    failing = int(num("consecutive_failures"))
    detail: dict[str, Any] = {
        "pending": int(pending),
        "oldest_pending_age_s": round(oldest_age, 3) if oldest_age is not None else None,
        "delivered": int(num("delivered")),
        "failed_attempts": int(num("attempts_failed")),
        "consecutive_failures": failing,
        "dead_letters": int(dead),
        "dead_lettered": int(num("dead_lettered")),
        "trimmed": int(num("trimmed")),
        "last_success_at": num("last_success_at") or None,
        "last_error_class": st.get("last_error_class") or None,
        "last_error_at": num("last_error_at") or None,
    }
    state, reason = "running", ""
    if failing and pending and oldest_age is not None and oldest_age > STUCK_AFTER_S:
        state, reason = "stuck", f"receiver failing for {oldest_age:.0f} s"
    elif failing and pending:
        state, reason = "degraded", f"receiver failing ({detail['last_error_class']})"
    elif num("last_dead_at") and now - num("last_dead_at") < RECENT_S:
        state, reason = "degraded", "events dead-lettered in the last hour"
    if reason:
        detail["reason"] = reason
    return WebhookStatus(w.name, state, detail)


_RANK = {"running": 0, "disabled": 0, "degraded": 1, "stuck": 2}


class WebhookService:
    """Fan-out, one sender per enabled webhook, the delivery lease and the health record.

    Args:
        cfg: Configuration (``webhooks``).
        redis_url: Redis URL.
        secrets: Webhook name → signing secret (default: :func:`resolve_secrets`).
        rnd: Jitter source of the senders (tests).

    Raises:
        ValueError: A secret variable is missing (from :func:`resolve_secrets`).
    """

    def __init__(
        self,
        cfg: CitysightConfig,
        redis_url: str,
        *,
        secrets: dict[str, str] | None = None,
        rnd: Callable[[], float] = random.random,
    ) -> None:
        self.cfg = cfg
        self.redis_url = redis_url
        self.secrets = resolve_secrets(cfg) if secrets is None else secrets
        self.instance = instance_id()
        self.stop_event = threading.Event()
        self.active = threading.Event()
        self.rnd = rnd
        self._threads: list[threading.Thread] = []
        self._senders: list[Sender] = []
        self._clients: list[redis.Redis] = []

    def _client(self) -> redis.Redis:
        c = redisconn.connect(self.redis_url, socket_timeout=10, socket_connect_timeout=5)
        self._clients.append(c)
        return c

    def start(self) -> WebhookService:
        """Create the consumer group and start the threads (returns at once)."""
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            # httpx logs every request at INFO: one line per delivery would drown the log
            # (failures are logged here, once per attempt, with the event id).
            httpx_log.setLevel(logging.WARNING)
        enabled = [w for w in self.cfg.webhooks if w.enabled]
        r = self._client()
        self.fanout = Fanout(self.cfg, r)
        self.fanout.ensure_group()  # before any event is written: none is missed
        self._spawn("webhooks-lease", self._lease_loop)
        self._spawn("webhooks-fanout", self._fanout_loop)
        for w in enabled:
            s = Sender(w, self.secrets[w.name], self._client(), self.stop_event, self.active,
                       rnd=self.rnd)  # fmt: skip
            self._senders.append(s)
            self._spawn(f"webhook-{w.name}", s.run)
        logger.info("webhooks: %d enabled, instance %s", len(enabled), self.instance)
        return self

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _fanout_loop(self) -> None:
        while not self.stop_event.is_set():
            if not self.active.is_set():
                self.stop_event.wait(0.2)
                continue
            try:
                self.fanout.step()
            except redis.RedisError as exc:
                logger.warning("webhooks fan-out: Redis error (%s); retrying", exc)
                self.fanout._backlog = True
                self.stop_event.wait(1.0)
            except Exception:
                logger.exception("webhooks fan-out failed; retrying")
                self.fanout._backlog = True
                self.stop_event.wait(1.0)

    def _lease_loop(self) -> None:
        r = self._client()
        lease = r.register_script(_LEASE)
        next_retention = 0.0
        while not self.stop_event.is_set():
            try:
                held = int(lease(keys=[keys.WEBHOOKS_LEASE], args=[self.instance, LEASE_MS]))
                if held:
                    if not self.active.is_set():
                        logger.info("webhooks: delivering (lease taken by %s)", self.instance)
                    self.active.set()
                    self.fanout.check_gap()
                    if time.monotonic() >= next_retention:
                        next_retention = time.monotonic() + RETENTION_PERIOD_S
                        for w in self.cfg.webhooks:
                            enforce_retention(r, w, self.cfg.retention.alert_ttl_s)
                    self.write_status(r)
                else:
                    self.active.clear()
            except redis.RedisError as exc:
                # Without Redis there is nothing to deliver; the lease expires by itself.
                self.active.clear()
                logger.warning("webhooks lease: Redis error (%s)", exc)
            self.stop_event.wait(STATUS_PERIOD_S)

    def status(self, r: redis.Redis) -> tuple[str, dict[str, Any]]:
        """The ``webhooks`` component: worst webhook's state and per-webhook detail."""
        now = time.time()
        per = {w.name: webhook_status(r, w, now) for w in self.cfg.webhooks}
        states = [s.state for s in per.values()]
        worst = max(states, key=lambda s: _RANK.get(s, 3), default="running")
        overall = "running" if worst == "disabled" else worst
        if self.fanout.lost_at and now - self.fanout.lost_at < RECENT_S and overall == "running":
            overall = "degraded"  # events were lost before they reached any outbox
        detail: dict[str, Any] = {
            "instance": self.instance,
            "feed_lost": self.fanout.lost,
            "webhooks": {n: {"state": s.state, **s.detail} for n, s in per.items()},
        }
        return overall, detail

    def write_status(self, r: redis.Redis) -> None:
        """Write the ``webhooks`` component of ``/health``."""
        state, detail = self.status(r)
        r.hset(
            keys.COMPONENTS,
            "webhooks",
            json.dumps({"state": state, "detail": detail, "updated_at": time.time()}, default=str),
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every thread, release the lease, close the clients."""
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout_s)
        for s in self._senders:
            s.close()
        try:
            if self._clients:
                self._clients[0].eval(_RELEASE, 1, keys.WEBHOOKS_LEASE, self.instance)
        except redis.RedisError:
            pass  # it expires by itself
        for c in self._clients:
            c.close()
        self._threads.clear()
        self._senders.clear()
        self._clients.clear()
