"""API error bodies: stable ``code``, unchanged English ``detail``, localized ``message``.

Real Redis, the production app (Starlette TestClient). Each main error class (401, 403,
404, 409, 413, 422, 400) is asked for in zh-CN and in English: the code and the detail do
not depend on the language, the message does. Accept-Language negotiation is table-driven.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from benchmarks.fanout.world import ROLES, seed_principals, token_of
from citysight.config import CameraConfig, CitysightConfig
from serve_app.errors import MESSAGES, STATUS_CODES, error_body, negotiate
from serve_app.http import create_api
from serve_app.store.cameras import CameraRegistry

CFG = CitysightConfig.model_validate(
    {"departments": [{"id": d} for d in ("fire", "enforcement", "police")]}
)


@pytest.fixture(scope="module")
def client(redis_server: Any) -> Iterator[TestClient]:
    """The app over a Redis with the test principals and one camera."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    seed_principals(r, ROLES)
    CameraRegistry(r).put(
        CameraConfig(id="cam-1", url="file:///v.mp4", latitude=20.0, longitude=110.0)
    )
    with TestClient(create_api(CFG, redis_server.url)) as c:
        yield c
    r.close()


def _h(role: str | None = None, lang: str | None = None) -> dict[str, str]:
    h = {}
    if role:
        h["Authorization"] = f"Bearer {token_of(role) if role != 'bogus' else 'bogus-token'}"
    if lang:
        h["Accept-Language"] = lang
    return h


CAMERA = {"id": "cam-1", "url": "rtsp://192.168.1.10:554/s", "latitude": 20.0, "longitude": 110.0}

# (name, method, path, role, json body, status, code, English detail starts with)
CASES = [
    ("no token", "GET", "/api/alerts", None, None, 401, "missing_token", "missing bearer"),
    ("bad token", "GET", "/api/alerts", "bogus", None, 401, "invalid_token", "invalid or revoked"),
    (
        "bad token, body",
        "POST",
        "/api/ws-tickets",
        "bogus",
        {},
        401,
        "invalid_token",
        "invalid or revoked",
    ),
    (
        "no scope",
        "POST",
        "/api/cameras",
        "fire",
        CAMERA,
        403,
        "missing_scope",
        "missing scope: cameras:write",
    ),
    ("not found", "GET", "/api/alerts/al_nope_000", "admin", None, 404, "not_found", "alert not"),
    ("no route", "GET", "/api/nothing-here", "admin", None, 404, "not_found", "Not Found"),
    ("exists", "POST", "/api/cameras", "admin", CAMERA, 409, "already_exists", "camera 'cam-1'"),
    (
        "invalid",
        "POST",
        "/api/cameras",
        "admin",
        {"id": "x"},
        422,
        "validation_error",
        "url: Field required",
    ),
    ("bad time", "GET", "/api/alerts?since=yesterday", "admin", None, 400, "bad_request", "since"),
]


@pytest.mark.parametrize(
    ("method", "path", "role", "body", "status", "code", "detail"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_error_classes_in_both_languages(
    client: TestClient,
    method: str,
    path: str,
    role: str | None,
    body: Any,
    status: int,
    code: str,
    detail: str,
) -> None:
    """Same status, code and detail in zh-CN and en; the message is in the asked language."""
    answers = {}
    for lang in ("zh-CN,zh;q=0.9,en;q=0.5", "en-US,en;q=0.9", None):
        r = client.request(method, path, json=body, headers=_h(role, lang))
        assert r.status_code == status, r.text
        answers[lang] = r.json()
    zh, en, default = answers.values()
    for b in (zh, en, default):
        assert b["code"] == code
        assert str(b["detail"]).startswith(detail), b
    assert zh["lang"] == "zh-CN" and en["lang"] == "en" and default["lang"] == "en"
    assert en == default  # no header: English
    assert zh["message"] != en["message"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh["message"]), zh
    assert zh["message"] == error_body(status, zh["detail"], "zh-CN", code=code)["message"] or (
        status == 422  # validation lists the fields
    )


def test_validation_message_names_the_fields(client: TestClient) -> None:
    """422: the localized message lists the invalid fields; ``errors`` is kept."""
    r = client.post("/api/cameras", json={"id": "x"}, headers=_h("admin", "zh-CN"))
    b = r.json()
    assert r.status_code == 422 and b["errors"], b
    assert b["message"].startswith("以下字段无效：") and "url" in b["message"], b


def test_body_too_large_is_localized(client: TestClient) -> None:
    """413 from the body guard (before any route) carries code and message too."""
    big = b"x" * (CFG.services.http.max_body_bytes + 1)
    r = client.post(
        "/api/cameras", content=big, headers={**_h("admin", "zh-CN"), "Content-Type": "text/plain"}
    )
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large" and r.json()["message"] == "请求内容过大。"


def test_conflicting_transition_keeps_its_detail(client: TestClient, redis_server: Any) -> None:
    """409 of a forbidden transition: the structured detail stays, code invalid_transition."""
    from benchmarks.fanout.world import make_alert
    from serve_app.store.alerts import AlertStore

    r = redis.Redis.from_url(redis_server.url)
    alert = make_alert(1, "fire")
    AlertStore(r, CFG).save_new([alert])
    r.close()
    res = client.post(
        f"/api/alerts/{alert.id}/transitions",
        json={"to": "closed"},
        headers=_h("admin", "zh-CN"),
    )
    b = res.json()
    assert res.status_code == 409, b
    assert b["code"] == "invalid_transition" and b["detail"]["from"] == "raised"
    assert b["message"] == "告警当前状态下不允许此操作。"


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "en"),
        ("", "en"),
        ("zh-CN", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("en-GB", "en"),
        ("fr-FR, de;q=0.8", "en"),
        ("fr-FR, zh;q=0.8, en;q=0.5", "zh-CN"),
        ("en;q=0.4, zh-CN;q=0.9", "zh-CN"),
        ("zh-CN;q=0, en", "en"),
        ("*", "en"),
        ("zh-CN;q=abc, en;q=0.1", "en"),  # malformed q: that entry is ignored
        ("<script>, zh", "zh-CN"),  # malformed tag ignored
        ("x" * 5000, "en"),
    ],
)
def test_accept_language_negotiation(header: str | None, lang: str) -> None:
    """RFC 9110 q-values; only zh-CN and en exist; anything else is English."""
    assert negotiate(header) == lang


def test_every_code_has_a_message_in_both_languages() -> None:
    """No code falls back silently: both tables cover every status code and each other."""
    assert set(MESSAGES["en"]) == set(MESSAGES["zh-CN"])
    assert set(STATUS_CODES.values()) <= set(MESSAGES["en"])
    b = error_body(429, "too many requests", "zh-CN")
    assert b["code"] == "rate_limited" and b["message"] == "请求过于频繁，请稍后再试。"
    assert error_body(418, "teapot", "zh-CN")["code"] == "error"
