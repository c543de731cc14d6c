"""Prometheus metrics of the ingress (``GET /metrics``).

A tiny dependency-free registry: Ray installs ``prometheus_client`` with its own global
registry, and a private one per app keeps replicas (and tests) independent.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import defaultdict

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

logger = logging.getLogger(__name__)

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


class Histogram:
    """A cumulative-bucket histogram."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        """Create a histogram with upper bounds ``buckets`` (ascending)."""
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        """Record one value."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


class Metrics:
    """Counters and histograms of one ingress replica."""

    def __init__(self) -> None:
        """Create an empty registry."""
        self._lock = threading.Lock()
        self.ws_clients = 0
        self.ws_closed_slow = 0
        self.ws_auth_failures = 0
        self.alerts_total: dict[str, int] = defaultdict(int)
        self.feed_messages = 0
        self.delivery_ms = Histogram(DELIVERY_BUCKETS_MS)
        self.http_requests: dict[tuple[str, int], int] = defaultdict(int)

    def observe_delivery(self, ms: float) -> None:
        """Record one WebSocket delivery latency (feed write to send done)."""
        self.delivery_ms.observe(ms)

    def count_request(self, method: str, status: int) -> None:
        """Count one HTTP response."""
        with self._lock:
            self.http_requests[(method, status)] += 1

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        out = [
            "# HELP citysight_ws_clients Open WebSocket subscribers on this replica.",
            "# TYPE citysight_ws_clients gauge",
            f"citysight_ws_clients {self.ws_clients}",
            "# HELP citysight_ws_closed_slow_total Subscribers closed for queue overflow.",
            "# TYPE citysight_ws_closed_slow_total counter",
            f"citysight_ws_closed_slow_total {self.ws_closed_slow}",
            "# HELP citysight_ws_auth_failures_total Refused WebSocket handshakes.",
            "# TYPE citysight_ws_auth_failures_total counter",
            f"citysight_ws_auth_failures_total {self.ws_auth_failures}",
            "# HELP citysight_feed_messages_total Feed entries read by this replica.",
            "# TYPE citysight_feed_messages_total counter",
            f"citysight_feed_messages_total {self.feed_messages}",
            "# HELP citysight_alerts_total New alerts seen on the feed, by kind.",
            "# TYPE citysight_alerts_total counter",
        ]
        if not self.alerts_total:
            out.append('citysight_alerts_total{kind=""} 0')
        for kind, n in sorted(self.alerts_total.items()):
            out.append(f'citysight_alerts_total{{kind="{kind}"}} {n}')
        h = self.delivery_ms
        out += [
            "# HELP citysight_ws_delivery_ms Feed write to WebSocket send, milliseconds.",
            "# TYPE citysight_ws_delivery_ms histogram",
        ]
        cum = 0
        for bound, c in zip(h.buckets, h.counts, strict=False):
            cum += c
            out.append(f'citysight_ws_delivery_ms_bucket{{le="{bound:g}"}} {cum}')
        out.append(f'citysight_ws_delivery_ms_bucket{{le="+Inf"}} {h.n}')
        out.append(f"citysight_ws_delivery_ms_sum {h.total:.3f}")
        out.append(f"citysight_ws_delivery_ms_count {h.n}")
        out += [
            "# HELP citysight_http_requests_total HTTP responses by method and status.",
            "# TYPE citysight_http_requests_total counter",
        ]
        with self._lock:
            items = sorted(self.http_requests.items())
        for (method, code), n in items:
            out.append(f'citysight_http_requests_total{{method="{method}",status="{code}"}} {n}')
        return "\n".join(out) + "\n"


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text metrics of this replica (unauthenticated, like most exporters)."""
    m: Metrics = request.app.state.ctx.metrics
    return PlainTextResponse(m.render(), media_type="text/plain; version=0.0.4")
