"""Webhook configuration: every bad input is a clear error at load or at start.

Also the outbound URL policy (citysight/outbound.py), the payload rules (event types,
filters, signature) and the retry schedule, table-driven.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

import pytest

from citysight.app.runtime import Runtime
from citysight.app.services.redis_server import ServiceError
from citysight.config import CitysightConfig, ConfigError, WebhookConfig, parse_config
from citysight.outbound import OutboundRefused, check_outbound_url, resolve_outbound
from serve_app.webhooks.delivery import backoff_s, resolve_secrets
from serve_app.webhooks.payload import event_type, matches, sign, verify

GOOD = {"name": "ops", "url": "https://hooks.example.org/citysight", "secret_env": "HOOK_SECRET"}


def hook(**kw: Any) -> dict[str, Any]:
    return {**GOOD, **kw}


BAD_CONFIGS = [
    ({"url": "ftp://hooks.example.org/x"}, "scheme 'ftp' is not allowed"),
    ({"url": "file:///etc/passwd"}, "scheme 'file' is not allowed"),
    ({"url": "hooks.example.org/x"}, "is not allowed"),
    ({"url": "http://"}, "URL has no host"),
    ({"url": "https://user:pw@hooks.example.org/"}, "user information"),
    ({"url": "http://169.254.169.254/latest/meta-data"}, "metadata endpoint"),
    ({"url": "http://2852039166/"}, "metadata endpoint"),  # 169.254.169.254 as a number
    ({"url": "http://metadata.google.internal/"}, "metadata endpoint"),
    ({"url": "http://169.254.10.1/"}, "link-local"),
    ({"url": "http://127.0.0.1:8080/"}, "loopback"),
    ({"url": "http://localhost:8080/"}, "loopback"),
    ({"url": "http://[::1]:8080/"}, "loopback"),
    ({"url": "http://0.0.0.0/"}, "not a unicast"),
    ({"url": "http://224.0.0.1/"}, "not a unicast"),
    ({"url": "http://hooks.example.org/a b"}, "whitespace"),
    ({"secret_env": "lower-case"}, "secret_env"),
    ({"name": "no spaces"}, "name"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"backoff_initial_s": 10, "backoff_max_s": 1}, "backoff_max_s is below"),
    ({"allow_networks": ["not-a-cidr"]}, "CIDR"),
    ({"events": ["exploded"]}, "events"),
    ({"kinds": ["meteor"]}, "kinds"),
    ({"surprise": 1}, "surprise"),
]


@pytest.mark.parametrize(("change", "message"), BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_bad_webhook_config_is_refused_with_a_clear_message(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"webhooks": [hook(**change)]})
    assert message in str(exc.value)
    assert "webhooks[0]" in str(exc.value)


def test_allowed_networks_lift_the_loopback_refusal_but_never_metadata() -> None:
    cfg = parse_config(
        {"webhooks": [hook(url="http://127.0.0.1:9/x", allow_networks=["127.0.0.1/32"])]}
    )
    assert cfg.webhooks[0].url == "http://127.0.0.1:9/x"
    with pytest.raises(ConfigError, match="metadata"):
        parse_config(
            {"webhooks": [hook(url="http://169.254.169.254/", allow_networks=["169.254.0.0/16"])]}
        )
    parse_config(
        {"webhooks": [hook(url="http://169.254.10.1/", allow_networks=["169.254.0.0/16"])]}
    )


def test_names_and_departments_are_checked_across_the_config() -> None:
    with pytest.raises(ConfigError, match="webhook names repeat: ops"):
        parse_config({"webhooks": [hook(), hook()]})
    with pytest.raises(ConfigError, match="unknown department 'nope'"):
        parse_config({"departments": [{"id": "fire"}], "webhooks": [hook(departments=["nope"])]})


def test_missing_or_short_secret_stops_the_start() -> None:
    cfg = CitysightConfig.model_validate({"webhooks": [hook()]})
    with pytest.raises(ValueError, match="HOOK_SECRET is not set"):
        resolve_secrets(cfg, {})
    with pytest.raises(ValueError, match="shorter than 16"):
        resolve_secrets(cfg, {"HOOK_SECRET": "short"})
    assert resolve_secrets(cfg, {"HOOK_SECRET": "x" * 16}) == {"ops": "x" * 16}
    off = CitysightConfig.model_validate({"webhooks": [hook(enabled=False)]})
    assert resolve_secrets(off, {}) == {}


def test_runtime_preflight_names_the_missing_secret(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    cfg = CitysightConfig.model_validate({"webhooks": [hook()], "services": {"http": {"port": 1}}})
    rt = Runtime(cfg, tmp_path, serve=False)
    with pytest.raises(ServiceError, match="webhook 'ops': secret variable HOOK_SECRET"):
        rt._check_webhooks()


def _resolver(*addresses: str) -> Any:
    def lookup(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return lookup


def test_delivery_checks_resolved_addresses_and_pins_them() -> None:
    t = resolve_outbound("https://hooks.example.org/x?y=1", resolver=_resolver("203.0.113.7"))
    assert t.pinned_url() == "https://203.0.113.7:443/x?y=1"
    assert t.host_header() == "hooks.example.org" and t.host == "hooks.example.org"
    # A name that resolves to the metadata endpoint or loopback (DNS rebinding) is refused,
    # even when only one of its answers is bad.
    for bad in (("169.254.169.254",), ("203.0.113.7", "127.0.0.1")):
        with pytest.raises(OutboundRefused):
            resolve_outbound("https://hooks.example.org/x", resolver=_resolver(*bad))
    allow = (ipaddress.ip_network("127.0.0.0/8"),)
    assert resolve_outbound("http://localhost:81/", allow).pinned_url() == "http://127.0.0.1:81/"
    assert check_outbound_url("http://10.1.2.3/hook") == "http://10.1.2.3/hook"  # intranet ok


EVENTS = [
    ({"from_state": None, "to_state": "raised"}, "raised"),
    ({"from_state": "raised", "to_state": "assigned"}, "assigned"),
    ({"from_state": "assigned", "to_state": "acknowledged"}, "acknowledged"),
    ({"from_state": "acknowledged", "to_state": "resolved"}, "resolved"),
    ({"from_state": "resolved", "to_state": "raised"}, "reopened"),
    ({"from_state": "closed", "to_state": "raised"}, "reopened"),
    ({"from_state": "raised", "to_state": "raised", "actor": "sla"}, "escalated"),
    ({"from_state": "resolved", "to_state": "resolved", "actor": "camera-check"}, "updated"),
    ({"from_state": "raised", "to_state": "false_alarm"}, "false_alarm"),
    ({"from_state": "raised", "to_state": "raised", "action": "report"}, "report"),
    ({"from_state": "resolved", "to_state": "feedback", "action": "feedback"}, "feedback"),
    ({"from_state": "resolved", "to_state": "closed", "action": "verified"}, "verified"),
    ({"from_state": "resolved", "to_state": "raised", "action": "reopened"}, "reopened"),
    (
        {"from_state": "resolved", "to_state": "resolved", "action": "recheck_failed"},
        "recheck_failed",
    ),
    ({"from_state": "resolved", "to_state": "closed", "action": "something_new"}, "closed"),
]


@pytest.mark.parametrize(("event", "expected"), EVENTS, ids=[e for _, e in EVENTS])
def test_event_types(event: dict[str, Any], expected: str) -> None:
    assert event_type(event) == expected


ALERT = {
    "kind": "vending", "department": "city", "escalated_to": ["duty"], "severity": "low",
    "jurisdiction": "qionghai/boao/grid-7", "camera_id": "cam1",
}  # fmt: skip
FILTERS = [
    ({}, True),
    ({"kinds": ["vending"]}, True),
    ({"kinds": ["fire"]}, False),
    ({"departments": ["duty"]}, True),  # escalated-to counts
    ({"departments": ["police"]}, False),
    ({"jurisdictions": ["qionghai/boao*"]}, True),
    ({"jurisdictions": ["qionghai/tanmen*"]}, False),
    ({"match": {"severity": ["high", "critical"]}}, False),
    ({"match": {"camera_id": ["cam?"]}}, True),
    ({"match": {"missing_field": ["*"]}}, False),
    ({"events": ["resolved"]}, False),
]


@pytest.mark.parametrize(("filters", "wanted"), FILTERS, ids=[str(f) for f, _ in FILTERS])
def test_filters(filters: dict[str, Any], wanted: bool) -> None:
    w = WebhookConfig.model_validate(hook(**filters))
    item = {"alert": ALERT, "event": {"from_state": None, "to_state": "raised"}}
    assert matches(w, item) is wanted


def test_events_filter_matches_the_action_and_the_transition() -> None:
    ev = {"from_state": "resolved", "to_state": "closed", "action": "verified"}
    item = {"alert": ALERT, "event": ev}
    for wanted in (["verified"], ["closed"]):
        assert matches(WebhookConfig.model_validate(hook(events=wanted)), item)
    assert not matches(WebhookConfig.model_validate(hook(events=["reopened"])), item)


def test_jurisdiction_filter_matches_a_list_of_ancestors() -> None:
    w = WebhookConfig.model_validate(hook(jurisdictions=["boao"]))
    alert = {**ALERT, "jurisdiction": "grid-7", "jurisdictions": ["qionghai", "boao", "grid-7"]}
    assert matches(w, {"alert": alert, "event": {"from_state": None, "to_state": "raised"}})


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"id":"al_1:0"}'
    sig = sign("k" * 16, 1_700_000_000, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify("k" * 16, "1700000000", body, sig)
    assert not verify("k" * 16, "1700000001", body, sig)  # timestamp is signed
    assert not verify("k" * 16, "1700000000", body + b" ", sig)
    assert not verify("j" * 16, "1700000000", body, sig)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    w = WebhookConfig.model_validate(hook(backoff_initial_s=1, backoff_max_s=30))
    assert [backoff_s(w, n, lambda: 1.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert [backoff_s(w, n, lambda: 0.0) for n in (1, 3, 9)] == [0.5, 2, 15]


def test_demo_webhook_is_opt_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from citysight.app.demo import DEMO_WEBHOOK_URL_ENV, demo_config_dict

    monkeypatch.delenv(DEMO_WEBHOOK_URL_ENV, raising=False)
    assert "webhooks" not in demo_config_dict(tmp_path)
    monkeypatch.setenv(DEMO_WEBHOOK_URL_ENV, "http://127.0.0.1:9000/")
    cfg = parse_config(demo_config_dict(tmp_path), "<demo>")
    (w,) = cfg.webhooks
    assert (w.name, w.url, w.secret_env) == (
        "demo",
        "http://127.0.0.1:9000/",
        "CITYSIGHT_DEMO_WEBHOOK_SECRET",
    )


def test_runtime_starts_delivery_before_serve_and_stops_it(
    redis_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    from citysight import keys

    monkeypatch.setenv("HOOK_SECRET", "x" * 20)
    cfg = CitysightConfig.model_validate(
        {"webhooks": [hook()], "services": {"redis": {"url": redis_url}}}
    )
    rt = Runtime(cfg, tmp_path, serve=False)
    rt._check_webhooks()
    rt.redis_url = redis_url
    rt._start_webhooks()
    r = redis.Redis.from_url(redis_url)
    try:
        groups = r.xinfo_groups(keys.FEED_STREAM)
        assert [g["name"] for g in groups] == [keys.WEBHOOKS_GROUP.encode()]
        deadline = time.monotonic() + 20
        while r.get(keys.WEBHOOKS_LEASE) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.get(keys.WEBHOOKS_LEASE) is not None
    finally:
        rt.stop()
    assert rt.webhooks is None and r.get(keys.WEBHOOKS_LEASE) is None  # released
    r.close()
