"""``/health`` and ``/metrics`` tell the truth about webhook delivery (the production app).

A receiver that refuses connections makes the ``webhooks`` component ``degraded`` with the
error class and the pending count; once it listens, the event is delivered and the
component is ``running`` again; the metric families say the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from webhookkit import Receiver

from citysight.config import CitysightConfig
from serve_app.http import create_api
from serve_app.store import AlertStore
from serve_app.webhooks.delivery import WebhookService

SECRET = "s3cret-for-the-tests-0123456789"


def wait_for(cond: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out")


def _cfg(url: str) -> CitysightConfig:
    return CitysightConfig.model_validate(
        {
            "departments": [{"id": "fire"}],
            "routing": [{"kind": "fire", "department": "fire"}],
            "webhooks": [
                {
                    "name": "ops", "url": url, "secret_env": "CS_TEST_SECRET",
                    "allow_networks": ["127.0.0.1/32"], "backoff_initial_s": 0.01,
                    "backoff_max_s": 0.05, "max_attempts": 1000,
                }
            ],
        }
    )  # fmt: skip


@pytest.fixture
def world(redis_url: str) -> Iterator[tuple[TestClient, Receiver, CitysightConfig]]:
    rx = Receiver(SECRET)  # not listening yet: connections are refused
    cfg = _cfg(rx.url)
    with TestClient(create_api(cfg, redis_url), client=("127.0.0.1", 50000)) as client:
        yield client, rx, cfg
    rx.stop()


def values(text: str) -> dict[str, float]:
    """Sample name → value of a Prometheus exposition (one series per name here)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.labels.get("webhook", "ops") == "ops" and "le" not in s.labels
    }


def _component(client: TestClient) -> dict[str, Any]:
    comp: dict[str, Any] = client.get("/health").json()["components"]["webhooks"]
    return comp


def test_health_and_metrics_follow_the_receiver(
    world: tuple[TestClient, Receiver, CitysightConfig], redis_url: str
) -> None:
    from datetime import UTC, datetime

    from citysight.contracts import Alert, AlertKind, Location, Severity

    client, rx, cfg = world
    # Configured but the delivery service is not running: never "running".
    assert _component(client)["state"] == "unknown"
    assert client.get("/health").json()["status"] != "ok"
    svc = WebhookService(cfg, redis_url, secrets={"ops": SECRET}).start()
    try:
        r = redis.Redis.from_url(redis_url)
        AlertStore(r, cfg).save_new(
            [
                Alert(
                    id="al_1", kind=AlertKind.FIRE, severity=Severity.HIGH, camera_id="c1",
                    location=Location(lat=1, lon=2), department="fire",
                    started_at=datetime.now(UTC),
                )
            ]
        )  # fmt: skip
        comp = wait_for(
            lambda: (
                (c := _component(client))["state"] == "degraded"
                and c["detail"]["webhooks"]["ops"]["pending"] == 1
                and c
            )
        )
        ops = comp["detail"]["webhooks"]["ops"]
        assert ops["last_error_class"] == "connect" and ops["consecutive_failures"] >= 1
        series = values(client.get("/metrics").text)
        assert series["citysight_webhook_pending"] == 1
        assert series["citysight_webhook_up"] == 0
        assert series["citysight_webhook_failed_attempts_total"] >= 1
        rx.start()
        wait_for(lambda: _component(client)["state"] == "running")
        ops = _component(client)["detail"]["webhooks"]["ops"]
        assert ops["pending"] == 0 and ops["delivered"] == 1 and ops["last_success_at"]
        series = values(client.get("/metrics").text)
        assert series["citysight_webhook_delivered_total"] == 1
        assert series["citysight_webhook_up"] == 1
        assert series["citysight_webhook_delivery_latency_seconds_count"] == 1
        r.close()
    finally:
        svc.stop()
    assert [q.event_id for q in rx.accepted()] == ["al_1:0"]


def test_health_without_webhooks_has_no_component(redis_url: str) -> None:
    with TestClient(create_api(CitysightConfig(), redis_url), client=("127.0.0.1", 50000)) as c:
        assert "webhooks" not in c.get("/health").json()["components"]
