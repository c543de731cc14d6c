"""Prometheus families of webhook delivery (label ``webhook``), read from Redis.

Counters live in each webhook's stats hash (``citysight.keys.webhook_stats``), written by
the sender in the same transaction as the delivery, so they survive restarts and any
replica renders the same numbers.
"""

from __future__ import annotations

from typing import Any

from citysight import keys
from citysight.config import CitysightConfig
from serve_app.metrics.exposition import Exposition
from serve_app.webhooks.delivery import LATENCY_BUCKETS_S, webhook_status


def render_webhooks(exp: Exposition, r: Any, cfg: CitysightConfig) -> None:
    """The webhook families for every configured webhook."""
    hooks = [w for w in cfg.webhooks if w.enabled]
    statuses = [webhook_status(r, w) for w in hooks]
    stats: list[dict[str, str]] = []
    if hooks:
        pipe = r.pipeline(transaction=False)
        for w in hooks:
            pipe.hgetall(keys.webhook_stats(w.name))
        for raw in pipe.execute():
            stats.append({keys.text(k) or "": keys.text(v) or "" for k, v in raw.items()})

    def each(key: str) -> list[tuple[dict[str, str], float]]:
        return [({"webhook": s.name}, float(s.detail.get(key) or 0)) for s in statuses]

    exp.counter(
        "citysight_webhook_delivered_total",
        "Events delivered (receiver answered 2xx).",
        each("delivered"),
    )
    exp.counter(
        "citysight_webhook_failed_attempts_total",
        "Delivery attempts that failed (retried, or dead-lettered at max_attempts).",
        each("failed_attempts"),
    )
    exp.counter(
        "citysight_webhook_dead_lettered_total",
        "Events moved to the dead-letter stream after max_attempts.",
        each("dead_lettered"),
    )
    exp.counter(
        "citysight_webhook_trimmed_total",
        "Undelivered events dropped because the outbox was full (max_pending).",
        each("trimmed"),
    )
    exp.gauge("citysight_webhook_pending", "Events waiting in the outbox.", each("pending"))
    exp.gauge(
        "citysight_webhook_dead_letters", "Events in the dead-letter stream.", each("dead_letters")
    )
    exp.gauge(
        "citysight_webhook_oldest_pending_age_seconds",
        "Age of the oldest undelivered event (0 when none).",
        each("oldest_pending_age_s"),
    )
    exp.gauge(
        "citysight_webhook_consecutive_failures",
        "Failed attempts since the last delivery.",
        each("consecutive_failures"),
    )
    exp.gauge(
        "citysight_webhook_last_success_timestamp_seconds",
        "Unix time of the last delivery (0 before the first).",
        each("last_success_at"),
    )
    exp.gauge(
        "citysight_webhook_up",
        "1 when the webhook's state is running, else 0.",
        [({"webhook": s.name}, 1.0 if s.state == "running" else 0.0) for s in statuses],
    )
    lost = keys.text(r.hget(keys.WEBHOOKS_FANOUT, "feed_lost")) if hooks else None
    exp.counter(
        "citysight_webhook_feed_lost_total",
        "Feed entries trimmed before the webhook fan-out read them (events never queued).",
        [({}, float(lost or 0))] if hooks else [],
    )
    exp.family(
        "citysight_webhook_delivery_latency_seconds",
        "histogram",
        "Event written (feed) to the receiver's 2xx, seconds; includes retries and outages.",
    )
    n = len(LATENCY_BUCKETS_S) + 1
    for w, st in zip(hooks, stats, strict=True):
        counts = [int(float(st.get(f"lat_{i}") or 0)) for i in range(n)]
        exp.histogram_samples(
            {"webhook": w.name}, LATENCY_BUCKETS_S, counts, float(st.get("lat_sum") or 0)
        )
