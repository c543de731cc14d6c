"""Prometheus metrics (``GET /metrics``): this replica's, every other replica's, the city's.

A tiny dependency-free registry: Ray installs ``prometheus_client`` with its own global
registry, and a private one per app keeps replicas (and tests) independent.

Each ingress replica publishes its counters to ``citysight:metrics:ingress`` every few
seconds (:meth:`Metrics.snapshot`); a scrape renders those of every live replica (label
``replica``) plus the city-wide families of :mod:`serve_app.metrics.fleet`, so Prometheus
may scrape any one replica (through the Serve proxy) and see everything.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from citysight.contracts import AlertKind
from citysight.metrics import Histogram, instance_id
from serve_app.auth import monitoring_denial
from serve_app.metrics.exposition import Exposition
from serve_app.metrics.fleet import live_snapshots, read_fleet, render_fleet
from serve_app.metrics.webhooks import render_webhooks

if TYPE_CHECKING:
    from serve_app.http import ApiContext

router = APIRouter(tags=["metrics"])

DELIVERY_BUCKETS_MS: tuple[float, ...] = (
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1000,
    2000,
    5000,
    10000,
)

__all__ = ["DELIVERY_BUCKETS_MS", "Histogram", "Metrics", "render_metrics", "router"]


class Metrics:
    """Counters and histograms of one ingress replica."""

    def __init__(self, replica: str | None = None) -> None:
        """Create an empty registry for ``replica`` (default: this process's ``host:pid``)."""
        self.replica = replica or instance_id()
        self._lock = threading.Lock()
        self.ws_clients = 0
        self.ws_closed_slow = 0
        self.ws_auth_failures = 0
        self.ws_closed_revoked = 0  # token revoked or principal changed under an open socket
        self.ws_refused_limit = 0  # per-principal cap or replica WebSocket capacity
        self.feed_read_errors = 0
        self.audit: dict[str, Any] = {}  # the last audit-chain verification (serve_app/audit)
        self.alerts_total: dict[str, int] = defaultdict(int)
        self.feed_messages = 0
        self.delivery_ms = Histogram(DELIVERY_BUCKETS_MS)
        self.http_requests: dict[tuple[str, int], int] = defaultdict(int)
        self.live: dict[str, int] = defaultdict(int)  # live view (serve_app/api/live.py)
        self.live_gauges: Any = None  # () -> {"viewers", "channels"}, set by the live hub

    def observe_delivery(self, ms: float) -> None:
        """Record one WebSocket delivery latency (feed write to send done)."""
        self.delivery_ms.observe(ms)

    def count_request(self, method: str, status: int) -> None:
        """Count one HTTP response."""
        with self._lock:
            self.http_requests[(method, status)] += 1

    def snapshot(self) -> dict[str, Any]:
        """This replica's counters as JSON (what other replicas render for it)."""
        with self._lock:
            requests = [[m, c, n] for (m, c), n in sorted(self.http_requests.items())]
        return {
            "ws_clients": self.ws_clients,
            "ws_closed_slow": self.ws_closed_slow,
            "ws_auth_failures": self.ws_auth_failures,
            "ws_closed_revoked": self.ws_closed_revoked,
            "ws_refused_limit": self.ws_refused_limit,
            "feed_read_errors": self.feed_read_errors,
            "audit": dict(self.audit),
            "feed_messages": self.feed_messages,
            "alerts_total": dict(self.alerts_total),
            "delivery_ms": self.delivery_ms.to_dict(),
            "http_requests": requests,
            "live": {**self.live, **(self.live_gauges() if self.live_gauges else {})},
            "updated_at": time.time(),
        }

    def render(self, others: dict[str, dict[str, Any]] | None = None) -> str:
        """Exposition of this replica (and ``others``: replica → snapshot) alone."""
        exp = Exposition()
        render_ingress(exp, {**(others or {}), self.replica: self.snapshot()})
        return exp.text()


def render_ingress(exp: Exposition, replicas: dict[str, dict[str, Any]]) -> None:
    """The ingress families, one series per replica (label ``replica``)."""
    items = sorted(replicas.items())

    def each(key: str) -> list[tuple[dict[str, str], float]]:
        return [({"replica": r}, float(s.get(key) or 0)) for r, s in items]

    exp.gauge("citysight_ws_clients", "Open WebSocket subscribers per replica.", each("ws_clients"))
    exp.counter(
        "citysight_ws_closed_slow_total",
        "Subscribers closed for queue overflow.",
        each("ws_closed_slow"),
    )
    exp.counter(
        "citysight_ws_auth_failures_total",
        "Refused WebSocket handshakes.",
        each("ws_auth_failures"),
    )
    exp.counter(
        "citysight_ws_closed_revoked_total",
        "Open WebSockets closed because their token was revoked or their principal changed.",
        each("ws_closed_revoked"),
    )
    exp.counter(
        "citysight_ws_refused_limit_total",
        "WebSocket handshakes refused by the per-principal cap or the replica's capacity.",
        each("ws_refused_limit"),
    )
    exp.counter(
        "citysight_feed_read_errors_total",
        "Failed reads of the feed stream by each replica's hub (retried, backed off).",
        each("feed_read_errors"),
    )

    def audit(key: str) -> list[tuple[dict[str, str], float]]:
        return [
            ({"replica": r}, float((s.get("audit") or {}).get(key) or 0))
            for r, s in items
            if (s.get("audit") or {}).get("verified_at")
        ]

    exp.gauge(
        "citysight_audit_chain_ok",
        "1 when the last verification of the whole audit chain passed (HMAC, links, "
        "exported head), else 0; absent before the first one.",
        audit("ok"),
    )
    exp.gauge(
        "citysight_audit_records",
        "Audit records checked by the last verification.",
        audit("records"),
    )
    exp.gauge(
        "citysight_audit_verified_at_seconds",
        "Unix time of the last audit-chain verification.",
        audit("verified_at"),
    )
    exp.counter(
        "citysight_feed_messages_total",
        "Feed entries read by each replica.",
        each("feed_messages"),
    )
    exp.family(
        "citysight_alerts_total",
        "counter",
        "New alerts seen on the feed, by kind. Every replica reads the whole feed: use max "
        "across replicas, not sum.",
    )
    for r, s in items:
        seen = s.get("alerts_total") or {}
        for kind in dict.fromkeys([*(k.value for k in AlertKind), *sorted(seen)]):
            exp.sample(int(seen.get(kind, 0)), {"replica": r, "kind": kind})
    exp.family(
        "citysight_ws_delivery_ms",
        "histogram",
        "Feed write to WebSocket send, milliseconds.",
    )
    for r, s in items:
        h = s.get("delivery_ms") or {}
        exp.histogram_samples(
            {"replica": r},
            h.get("buckets") or DELIVERY_BUCKETS_MS,
            h.get("counts") or [0] * (len(DELIVERY_BUCKETS_MS) + 1),
            float(h.get("sum") or 0),
        )
    render_live(exp, items)
    exp.family("citysight_http_requests_total", "counter", "HTTP responses by method and status.")
    for r, s in items:
        for method, code, n in s.get("http_requests") or []:
            exp.sample(n, {"replica": r, "method": str(method), "status": str(code)})


_LIVE_COUNTERS: tuple[tuple[str, str], ...] = (
    ("sessions", "Live-view sessions accepted."),
    ("bytes", "Bytes of fragmented MP4 sent to live viewers (counted when a session ends)."),
    ("packets", "Packets remuxed for live viewers."),
    ("dropped_slow", "Live viewers closed for being too slow (queue overflow, send timeout)."),
    ("refused_auth", "Live handshakes refused: no valid token or ticket."),
    ("refused_scope", "Live handshakes refused: missing scope or camera outside scope."),
    ("refused_camera_cap", "Live handshakes refused by services.live.max_viewers_per_camera."),
    ("refused_node_cap", "Live handshakes refused by services.live.max_viewers_per_node."),
    ("closed_revoked", "Live sessions closed because the token was revoked or changed."),
    ("unavailable", "Live sessions closed: the camera offers no playable packets."),
    ("no_video", "Live sessions closed: no video within services.live.start_timeout_s."),
    ("read_errors", "Failed reads of live packet streams (retried)."),
)


def render_live(exp: Exposition, items: list[tuple[str, dict[str, Any]]]) -> None:
    """The live-view families, one series per replica."""

    def each(key: str) -> list[tuple[dict[str, str], float]]:
        return [({"replica": r}, float((s.get("live") or {}).get(key) or 0)) for r, s in items]

    exp.gauge("citysight_live_viewers", "Open live viewers per replica.", each("viewers"))
    exp.gauge("citysight_live_channels", "Cameras watched live per replica.", each("channels"))
    for key, help_ in _LIVE_COUNTERS:
        exp.counter(f"citysight_live_{key}_total", help_, each(key))


def render_metrics(c: ApiContext) -> str:
    """The whole exposition of ``GET /metrics``."""
    t0 = time.perf_counter()
    st = read_fleet(c.redis, c.cfg.services.streams.shards)
    exp = Exposition()
    replicas = live_snapshots(st, "ingress")
    replicas[c.metrics.replica] = c.metrics.snapshot()  # our own numbers, fresh
    render_ingress(exp, replicas)
    render_fleet(exp, st)
    render_webhooks(exp, c.redis, c.cfg)
    exp.gauge(
        "citysight_metrics_scrape_redis_commands",
        "Redis commands this scrape sent (in two pipelines; independent of camera count).",
        [({}, st.commands)],
    )
    exp.gauge(
        "citysight_metrics_scrape_duration_seconds",
        "Time this replica took to read the state and render the exposition.",
        [({}, round(time.perf_counter() - t0, 6))],
    )
    return exp.text()


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text metrics: every replica's and the city's.

    Only for local callers (``services.http.local_monitoring``) or a token with
    ``monitoring:read``: the series name cameras, workers and their placement.
    """
    denial = monitoring_denial(request)
    if denial is not None:
        raise denial
    c: ApiContext = request.app.state.ctx
    return PlainTextResponse(render_metrics(c), media_type="text/plain; version=0.0.4")
