"""Webhook delivery end to end: real Redis, the real alert store, a real HTTP receiver.

Events are written by :class:`AlertStore` (as the rules consumer and the API write them);
the :class:`WebhookService` fans them out from the feed and POSTs them to a receiver on
127.0.0.1 that is down, fails, then recovers. Backoffs are milliseconds, so each test takes
a few seconds; every wait is for a condition, never a fixed sleep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from webhookkit import Receiver

from citysight import keys
from citysight.config import CitysightConfig
from citysight.contracts import Alert, AlertKind, AlertState, EvidenceRef, Location, Severity
from serve_app.store import AlertStore, read_feed
from serve_app.webhooks.admin import dead_letters, replay
from serve_app.webhooks.delivery import Fanout, WebhookService, webhook_status
from serve_app.webhooks.payload import event_from_feed, event_id

SECRET = "s3cret-for-the-tests-0123456789"
S = AlertState


def config(url: str, **hook: Any) -> CitysightConfig:
    w: dict[str, Any] = {
        "name": "ops", "url": url, "secret_env": "CS_TEST_WEBHOOK_SECRET",
        "allow_networks": ["127.0.0.1/32"], "backoff_initial_s": 0.005,
        "backoff_max_s": 0.05, "max_attempts": 1000, "timeout_s": 2,
    }  # fmt: skip
    w.update(hook)
    return CitysightConfig.model_validate(
        {
            "departments": [{"id": "fire", "supervisor": "duty", "ack_sla_s": 60}, {"id": "duty"}],
            "routing": [{"kind": "fire", "department": "fire"}],
            "webhooks": [w],
        }
    )


def make_alert(i: int, **kw: Any) -> Alert:
    base: dict[str, Any] = dict(
        id=f"al_{i:04d}", kind=AlertKind.FIRE, severity=Severity.HIGH, camera_id=f"cam{i % 3}",
        location=Location(lat=1.0, lon=2.0), department="fire", rule_id="fire",
        started_at=datetime.fromtimestamp(1_700_000_000 + i, UTC),
    )  # fmt: skip
    base.update(kw)
    return Alert(**base)


def wait_for(cond: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or cond}")


def write_events(store: AlertStore, n_alerts: int, start: int = 0) -> None:
    """Per alert: raised, acknowledged, resolved (3 events)."""
    for i in range(start, start + n_alerts):
        store.save_new([make_alert(i)])
        store.transition(f"al_{i:04d}", S.ACKNOWLEDGED, actor="op")
        store.transition(f"al_{i:04d}", S.RESOLVED, actor="op", outcome="extinguished")


def feed_event_ids(r: redis.Redis) -> list[str]:
    """Every alert event of the feed, in feed order (what a receiver must get, in order)."""
    out = []
    for _, f in read_feed(r, "0", 100_000):
        item = event_from_feed(f)
        if item is not None:
            out.append(event_id(item["event"]))
    return out


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def services() -> Iterator[list[WebhookService]]:
    started: list[WebhookService] = []
    yield started
    for s in started:
        s.stop()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for x in made:
        x.stop()


def start_service(
    cfg: CitysightConfig, redis_url: str, services: list[WebhookService]
) -> WebhookService:
    svc = WebhookService(cfg, redis_url, secrets={"ops": SECRET}).start()
    services.append(svc)
    return svc


def test_receiver_down_then_failing_then_back_gets_every_event_once_in_order(
    redis_url: str, r: redis.Redis, services: list[WebhookService], receivers: list[Receiver]
) -> None:
    # The receiver answers 500 to its first 5 requests once it is up.
    rx = Receiver(SECRET, answer=lambda n: 500 if n < 5 else 200)
    receivers.append(rx)
    cfg = config(rx.url)
    store = AlertStore(r, cfg)
    svc = start_service(cfg, redis_url, services)
    write_events(store, 10)  # 30 events while nobody listens: connections refused
    wait_for(
        lambda: webhook_status(r, cfg.webhooks[0]).detail["consecutive_failures"] >= 3,
        what="refused attempts",
    )
    st = webhook_status(r, cfg.webhooks[0])
    assert st.state == "degraded" and st.detail["last_error_class"] == "connect"
    assert st.detail["pending"] >= 1
    rx.start()
    write_events(store, 5, start=10)  # 15 more while it recovers
    expected = feed_event_ids(r)
    assert len(expected) == 45
    wait_for(lambda: len(rx.accepted()) >= 45, what="45 deliveries")
    got = [q.event_id for q in rx.accepted()]
    assert got == expected  # every event, once, in the order written
    assert all(q.signature_ok for q in rx.requests)
    assert [q.status for q in rx.requests[:5]] == [500] * 5
    assert rx.requests[5].event_id == rx.requests[0].event_id  # head-of-line: same event
    assert rx.requests[0].attempt > 1  # the refused attempts counted too
    # payloads: type and the idempotency key in the body match the header
    first = rx.accepted()[0].payload
    assert first["type"] == "alert.raised" and first["id"] == got[0]
    assert [q.payload["type"] for q in rx.accepted()[:3]] == [
        "alert.raised",
        "alert.acknowledged",
        "alert.resolved",
    ]
    wait_for(lambda: svc.status(r)[0] == "running", what="running again")
    detail = svc.status(r)[1]["webhooks"]["ops"]
    assert detail["pending"] == 0 and detail["delivered"] == 45
    assert detail["failed_attempts"] >= 8 and detail["dead_letters"] == 0


def test_always_failing_receiver_dead_letters_after_n_and_replay_delivers(
    redis_url: str, r: redis.Redis, services: list[WebhookService], receivers: list[Receiver]
) -> None:
    healthy = {"on": False}
    rx = Receiver(SECRET, answer=lambda n: 200 if healthy["on"] else 503).start()
    receivers.append(rx)
    cfg = config(rx.url, max_attempts=3)
    store = AlertStore(r, cfg)
    svc = start_service(cfg, redis_url, services)
    store.save_new([make_alert(1), make_alert(2)])
    wait_for(lambda: r.xlen(keys.webhook_dead("ops")) == 2, what="2 dead letters")
    assert rx.count() == 6  # 3 attempts each, then it moved on
    assert [q.attempt for q in rx.requests] == [1, 2, 3, 1, 2, 3]
    dead = dead_letters(r, "ops")
    assert [d["event_id"] for d in dead] == ["al_0001:0", "al_0002:0"]
    assert dead[0]["attempts"] == "3" and dead[0]["last_error"] == "HTTP 503"
    state, detail = svc.status(r)
    assert state == "degraded" and detail["webhooks"]["ops"]["dead_lettered"] == 2
    healthy["on"] = True
    assert replay(r, "ops") == 2
    wait_for(lambda: len(rx.accepted()) == 2, what="replayed deliveries")
    assert [q.event_id for q in rx.accepted()] == ["al_0001:0", "al_0002:0"]
    assert r.xlen(keys.webhook_dead("ops")) == 0


def test_restart_mid_way_loses_nothing_and_duplicates_nothing(
    redis_url: str, r: redis.Redis, services: list[WebhookService], receivers: list[Receiver]
) -> None:
    rx = Receiver(SECRET).start()
    receivers.append(rx)
    cfg = config(rx.url)
    store = AlertStore(r, cfg)
    first = start_service(cfg, redis_url, services)
    write_events(store, 20)
    wait_for(lambda: len(rx.accepted()) >= 10, what="some deliveries")
    first.stop()  # the runtime stops (a deploy); events keep coming
    write_events(store, 10, start=20)
    # A crashed fan-out: entries read from the feed by the group but never acknowledged.
    read = r.xreadgroup(keys.WEBHOOKS_GROUP, "fanout", {keys.FEED_STREAM: ">"}, count=5)
    assert read and len(read[0][1]) == 5
    second = start_service(cfg, redis_url, services)
    expected = feed_event_ids(r)
    assert len(expected) == 90
    wait_for(lambda: len(rx.accepted()) >= 90, what="90 deliveries")
    wait_for(lambda: second.status(r)[1]["webhooks"]["ops"]["pending"] == 0, what="drained")
    got = [q.event_id for q in rx.accepted()]
    assert sorted(set(got)) == sorted(expected)
    # At least once: a stop between the 2xx and the delete may repeat that one event.
    assert len(got) - len(set(got)) <= 1
    assert list(dict.fromkeys(got)) == expected  # order kept across the restart
    pending = r.xpending(keys.FEED_STREAM, keys.WEBHOOKS_GROUP)
    assert pending["pending"] == 0


def test_filters_plate_privacy_and_evidence_links(
    redis_url: str, r: redis.Redis, services: list[WebhookService], receivers: list[Receiver]
) -> None:
    rx = Receiver(SECRET).start()
    receivers.append(rx)
    cfg = config(
        rx.url,
        kinds=["plate", "fire"],
        match={"severity": ["high", "critical"]},
        events=["raised", "resolved"],
        evidence_base_url="https://ops.example.org/",
    )
    store = AlertStore(r, cfg)
    start_service(cfg, redis_url, services)
    plate = make_alert(
        1, kind=AlertKind.PLATE, plate_text="京A12345", subject="京A12345",
        summary="hotlist plate 京A12345",
        evidence=[
            EvidenceRef(key="citysight:evidence:x"),
            EvidenceRef(key="citysight:evidence:y", id="ph1", source="report"),
        ],
    )  # fmt: skip
    store.save_new([plate, make_alert(2, severity=Severity.LOW), make_alert(3, kind="smoke")])
    store.transition("al_0001", S.ACKNOWLEDGED, actor="op")  # not an event it wants
    store.transition("al_0001", S.RESOLVED, actor="op", outcome="stopped")
    wait_for(lambda: len(rx.accepted()) >= 2, what="2 deliveries")
    wait_for(lambda: r.xlen(keys.webhook_outbox("ops")) == 0, what="drained")
    got = rx.accepted()
    assert [q.event_id for q in got] == ["al_0001:0", "al_0001:2"]
    body = json.dumps([q.payload for q in got], ensure_ascii=False)
    assert "京A12345" not in body  # plate text withheld by default
    alert = got[0].payload["alert"]
    assert alert["plate_text"] is None and alert["subject"] == "[plate withheld]"
    assert alert["evidence"] == [
        {
            "index": 0,
            "id": "",
            "source": "snapshot",
            "url": "https://ops.example.org/api/alerts/al_0001/evidence",
            "media_type": "image/jpeg",
            "frame_time": 0.0,
        },
        {
            "index": 1,
            "id": "ph1",
            "source": "report",
            "url": "https://ops.example.org/api/alerts/al_0001/evidence/ph1",
            "media_type": "image/jpeg",
            "frame_time": 0.0,
        },
    ]
    assert "citysight:evidence" not in body  # no internal storage keys
    assert got[0].payload["event"]["note"] == "[plate withheld]"


def test_plates_sent_when_allowed(
    redis_url: str, r: redis.Redis, services: list[WebhookService], receivers: list[Receiver]
) -> None:
    rx = Receiver(SECRET).start()
    receivers.append(rx)
    cfg = config(rx.url, include_plates=True)
    start_service(cfg, redis_url, services)
    AlertStore(r, cfg).save_new([make_alert(1, kind=AlertKind.PLATE, plate_text="京A12345")])
    wait_for(lambda: len(rx.accepted()) == 1, what="delivery")
    assert rx.accepted()[0].payload["alert"]["plate_text"] == "京A12345"


def test_full_outbox_trims_the_oldest_and_counts_them(r: redis.Redis) -> None:
    cfg = config("http://127.0.0.1:9/hook", max_pending=10)
    fan = Fanout(cfg, r)
    fan.ensure_group()
    AlertStore(r, cfg).save_new([make_alert(i) for i in range(15)])
    while fan.step(block_ms=50):
        pass
    assert r.xlen(keys.webhook_outbox("ops")) == 10
    st = webhook_status(r, cfg.webhooks[0])
    assert st.detail["trimmed"] == 5 and st.detail["pending"] == 10
    rows = r.xrange(keys.webhook_outbox("ops"), count=1)
    assert rows[0][1][b"event_id"] == b"al_0005:0"  # the 5 oldest were dropped


def test_feed_trimmed_past_the_fanout_is_detected(r: redis.Redis) -> None:
    cfg = config("http://127.0.0.1:9/hook")
    fan = Fanout(cfg, r)
    fan.ensure_group()
    store = AlertStore(r, cfg)
    store.save_new([make_alert(i) for i in range(2)])
    fan.step(block_ms=10)  # read and queued
    store.save_new([make_alert(i) for i in range(2, 6)])
    assert fan.check_gap() == 0
    # The fan-out was down past the feed's retention: 3 of the 4 new entries trimmed.
    r.xtrim(keys.FEED_STREAM, maxlen=1, approximate=False)
    assert fan.check_gap() == 3
    assert fan.check_gap() == 0  # counted once
    assert fan.lost == 3 and r.hget(keys.WEBHOOKS_FANOUT, "feed_lost") == b"3"
    fan.step(block_ms=10)  # what is left is still queued
    assert r.xlen(keys.webhook_outbox("ops")) == 3


def test_only_the_lease_holder_delivers(
    redis_url: str, r: redis.Redis, services: list[WebhookService], receivers: list[Receiver]
) -> None:
    rx = Receiver(SECRET).start()
    receivers.append(rx)
    cfg = config(rx.url)
    a = start_service(cfg, redis_url, services)
    b = start_service(cfg, redis_url, services)
    wait_for(lambda: a.active.is_set() or b.active.is_set(), what="a leader")
    write_events(AlertStore(r, cfg), 5)
    wait_for(lambda: len(rx.accepted()) == 15, what="15 deliveries")
    assert a.active.is_set() != b.active.is_set()
    leader, standby = (a, b) if a.active.is_set() else (b, a)
    leader.stop()
    wait_for(standby.active.is_set, what="the standby takes over")
    write_events(AlertStore(r, cfg), 1, start=5)
    wait_for(lambda: len(rx.accepted()) == 18, what="3 more")
    assert [q.event_id for q in rx.accepted()] == feed_event_ids(r)


@pytest.fixture
def localhost_cert(tmp_path: Any) -> tuple[str, str]:
    """A self-signed certificate for ``localhost`` (made with the openssl command)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
         cert, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_https_pins_the_address_and_verifies_the_name(
    redis_url: str,
    r: redis.Redis,
    services: list[WebhookService],
    receivers: list[Receiver],
    localhost_cert: tuple[str, str],
) -> None:
    """``https://localhost``: connects to the checked 127.0.0.1 and verifies the certificate
    for ``localhost`` (the TLS server name), trusting only the configured CA file."""
    rx = Receiver(SECRET, tls=localhost_cert).start()
    receivers.append(rx)
    untrusted = config(rx.url, max_attempts=2)
    start_service(untrusted, redis_url, services)
    AlertStore(r, untrusted).save_new([make_alert(1)])
    wait_for(lambda: r.xlen(keys.webhook_dead("ops")) == 1, what="refused certificate")
    assert webhook_status(r, untrusted.webhooks[0]).detail["last_error_class"] == "tls"
    assert rx.count() == 0  # nothing was sent to a server that failed verification
    services.pop().stop()
    trusted = config(rx.url, ca_file=localhost_cert[0])
    start_service(trusted, redis_url, services)
    AlertStore(r, trusted).save_new([make_alert(2)])
    wait_for(lambda: len(rx.accepted()) == 1, what="delivery over TLS")
    q = rx.accepted()[0]
    assert q.event_id == "al_0002:0" and q.signature_ok
    assert q.headers["Host"] == f"localhost:{rx.port}"


def test_missing_ca_file_stops_the_start(tmp_path: Any) -> None:
    from serve_app.webhooks.delivery import resolve_secrets

    cfg = config("https://localhost:9/hook", ca_file=str(tmp_path / "none.pem"))
    with pytest.raises(ValueError, match="webhook 'ops': ca_file"):
        resolve_secrets(cfg, {"CS_TEST_WEBHOOK_SECRET": SECRET})


def test_retention_drops_old_events_from_outbox_and_dead_letters(r: redis.Redis) -> None:
    from serve_app.webhooks.delivery import enforce_retention

    cfg = config("http://127.0.0.1:9/hook")
    now = 1_800_000_000.0
    for key in (keys.webhook_outbox("ops"), keys.webhook_dead("ops")):
        for i, age_s in enumerate((7200, 3601, 3599, 10)):
            ms = int((now - age_s) * 1000)
            r.xadd(key, {"event_id": f"al_{i}:0", "body": "{}", "feed_ms": ms, "feed_id": ms})
    assert enforce_retention(r, cfg.webhooks[0], 3600, now) == (2, 2)
    for key in (keys.webhook_outbox("ops"), keys.webhook_dead("ops")):
        assert [f[b"event_id"] for _, f in r.xrange(key)] == [b"al_2:0", b"al_3:0"]
    assert webhook_status(r, cfg.webhooks[0]).detail["trimmed"] == 2  # counted, never silent
    assert enforce_retention(r, cfg.webhooks[0], 3600, now) == (0, 0)
