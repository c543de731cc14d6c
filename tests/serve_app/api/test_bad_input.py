"""Bad numbers and times on every route that takes them: a clear 4xx, never a 503.

``since=nan`` used to reach Redis as a score and come back as 503 "storage unavailable".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from benchmarks.fanout.world import make_alert, seed_principals, token_of, world_config
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore
from serve_app.store.audit import AuditLog
from serve_app.store.plates import PlateReads

ADMIN = {"Authorization": f"Bearer {token_of('admin')}"}

# Time routes: (path with a placeholder, the parameter's name in the error).
TIME_ROUTES = [
    ("/api/alerts?since={}", "since"),
    ("/api/alerts?until={}", "until"),
    ("/api/plates/AB123/reads?reason=case+7&from={}", "from"),
    ("/api/plates/AB123/reads?reason=case+7&to={}", "to"),
]
BAD_TIMES = [
    ("nan", "finite"),
    ("NaN", "finite"),
    ("-nan", "finite"),
    ("inf", "finite"),
    ("-inf", "finite"),
    ("Infinity", "finite"),
    ("1e400", "finite"),  # overflows to inf
    ("-1", "1970"),
    ("-0.5", "1970"),
    ("1e300", "9999"),
    ("253402300800", "9999"),  # one second after 9999-12-31T23:59:59Z
    ("1969-12-31T23:59:59Z", "1970"),
    ("yesterday", "ISO 8601"),
    ("2026-13-01", "ISO 8601"),
    ("0x10", "ISO 8601"),
]


@pytest.fixture(scope="module")
def client(redis_server: Any) -> Iterator[TestClient]:
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    seed_principals(r)
    cfg = world_config()
    AlertStore(r, cfg).save_new([make_alert(1, "fire", t=1_700_000_000.0)])
    PlateReads(r, cfg).add_many([("AB123", "cam-police", 1_700_000_000.0, 0.9)])
    with TestClient(create_api(cfg, redis_server.url)) as c:
        c.r = r  # type: ignore[attr-defined]
        c.cfg = cfg  # type: ignore[attr-defined]
        yield c
    r.close()


@pytest.mark.parametrize(("value", "says"), BAD_TIMES)
@pytest.mark.parametrize(("route", "name"), TIME_ROUTES)
def test_bad_time_is_400_with_a_clear_message(
    client: TestClient, route: str, name: str, value: str, says: str
) -> None:
    res = client.get(route.format(value), headers=ADMIN)
    assert res.status_code == 400, res.text
    detail = res.json()["detail"]
    assert detail.startswith(f"{name}: ") and says in detail and repr(value) in detail


@pytest.mark.parametrize(
    "value", ["0", "1700000000", "1700000000.5", "2023-11-14T22:13:20Z", "2023-11-14", " 0 "]
)
def test_good_times_still_work(client: TestClient, value: str) -> None:
    assert client.get(f"/api/alerts?since={value}", headers=ADMIN).status_code == 200
    res = client.get(f"/api/plates/AB123/reads?reason=case+7&from={value}", headers=ADMIN)
    assert res.status_code == 200


def test_reversed_range_is_400(client: TestClient) -> None:
    res = client.get("/api/alerts?since=2000&until=1000", headers=ADMIN)
    assert res.status_code == 400 and "since (2000) is after until (1000)" in res.json()["detail"]
    res = client.get("/api/plates/AB123/reads?reason=x&from=2000&to=1000", headers=ADMIN)
    assert res.status_code == 400 and "from (2000) is after to (1000)" in res.json()["detail"]


def test_a_refused_plate_query_is_not_audited(client: TestClient) -> None:
    before = len(AuditLog(client.r, client.cfg).list(limit=1000))  # type: ignore[attr-defined]
    assert client.get("/api/plates/AB123/reads?reason=x&from=nan", headers=ADMIN).status_code == 400
    assert len(AuditLog(client.r, client.cfg).list(limit=1000)) == before  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "route",
    [
        "/api/alerts?limit={}",
        "/api/incidents?limit={}",
        "/api/audit?limit={}",
    ],
)
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e9", "99999999999999999999", "x"])
def test_bad_numbers_are_422_with_a_clear_message(
    client: TestClient, route: str, value: str
) -> None:
    res = client.get(route.format(value), headers=ADMIN)
    assert res.status_code == 422, res.text
    assert "limit" in res.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latitude", "NaN"),
        ("longitude", "Infinity"),
        ("heading_deg", "-Infinity"),
        ("latitude", "1e400"),
    ],
)
def test_non_finite_camera_numbers_are_refused(client: TestClient, field: str, value: str) -> None:
    """JSON has no NaN, but Python's parser accepts the literal: the model must refuse it."""
    body = (
        '{"id": "cam-nan", "url": "rtsp://10.0.0.9/s", "latitude": 20.0, "longitude": 110.0, '
        '"heading_deg": 10}'
    ).replace(
        f'"{field}": '
        + ("20.0" if field == "latitude" else "110.0" if field == "longitude" else "10"),
        f'"{field}": {value}',
    )
    assert value in body
    res = client.post(
        "/api/cameras", content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert res.status_code == 422, res.text
    assert field in res.json()["detail"]


def test_severity_filter(client: TestClient) -> None:
    """``severity`` narrows the listing (the map counts open critical alerts with it)."""
    store = AlertStore(client.r, client.cfg)  # type: ignore[attr-defined]
    store.save_new([make_alert(2, "fire", t=1_700_000_100.0)])  # even: low; odd: high
    got = client.get("/api/alerts?severity=high", headers=ADMIN).json()
    assert [a["severity"] for a in got] == ["high"]
    got = client.get("/api/alerts?severity=high,low&state=raised", headers=ADMIN).json()
    assert sorted(a["severity"] for a in got) == ["high", "low"]
    res = client.get("/api/alerts?severity=extreme", headers=ADMIN)
    assert res.status_code == 422 and "severity: unknown value(s) extreme" in res.json()["detail"]
