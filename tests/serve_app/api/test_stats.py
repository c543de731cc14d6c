"""GET /api/stats and the CSV export of the alert list, on a real Redis and the real app."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from citysight import keys
from citysight.config import CitysightConfig
from citysight.contracts import Alert, AlertEvent, AlertKind, AlertState, Location, Severity
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore
from serve_app.store.stats import measure, percentile

S = AlertState


def _box(lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [ring]}


CFG = CitysightConfig.model_validate(
    {
        "site": {"timezone": "Asia/Shanghai"},
        "jurisdictions": {
            "areas": [
                {"id": "city", "level": "city", "geometry": _box(110.0, 20.0, 110.2, 20.2)},
                {
                    "id": "north",
                    "name": "North town",
                    "level": "township",
                    "parent": "city",
                    "geometry": _box(110.0, 20.1, 110.2, 20.2),
                },
                {
                    "id": "south",
                    "level": "township",
                    "parent": "city",
                    "geometry": _box(110.0, 20.0, 110.2, 20.1),
                },
            ]
        },
        "departments": [{"id": "fire", "ack_sla_s": 300}, {"id": "police", "ack_sla_s": 60}],
    }
)
POS = {"north": (20.15, 110.05), "south": (20.05, 110.05)}
ROLES = {
    "admin": {"department": "*", "scopes": ["alerts:read", "alerts:dispatch", "plates:query"]},
    "reader": {"department": "*", "scopes": ["alerts:read"]},
    "fire": {"department": "fire", "scopes": ["alerts:read"]},
}


def _h(role: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer tok-stats-{role}-0123456789", **extra}


def _alert(aid: str, town: str, dept: str, t: float, **kw: Any) -> Alert:
    lat, lon = POS[town]
    return Alert(
        id=aid,
        kind=kw.pop("kind", AlertKind.FIRE),
        severity=Severity.HIGH,
        camera_id=f"cam-{town}",
        location=Location(lat=lat, lon=lon),
        department=dept,
        rule_id=kw.pop("rule_id", "fire-rule"),
        started_at=datetime.fromtimestamp(t, UTC),
        raised_at=t,
        **kw,
    )


NOW = time.time()


@pytest.fixture(scope="module")
def world(redis_server: Any) -> Iterator[tuple[TestClient, redis.Redis, AlertStore]]:
    # "Now" is when the world is built, not when the module was imported: in a full run
    # collection comes many minutes before this module's tests.
    global NOW
    NOW = time.time()
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    for role, p in ROLES.items():
        rec = {"name": f"{role}-user", "role": role, **p}
        r.hset(
            keys.PRINCIPALS,
            hashlib.sha256(f"tok-stats-{role}-0123456789".encode()).hexdigest(),
            json.dumps(rec),
        )
    store = AlertStore(r, CFG)
    # north: 3 fire alerts raised an hour ago; south: 2 police alerts (one plate alert).
    store.save_new(
        [_alert(f"al_n{i}", "north", "fire", NOW - 3600 + i) for i in range(3)]
        + [
            _alert("al_s0", "south", "police", NOW - 1800),
            _alert(
                "al_s1",
                "south",
                "police",
                NOW - 1700,
                kind=AlertKind.PLATE,
                rule_id="hotlist",
                plate_text="=HYPERLINK(1)",
                summary="+cmd|' /C calc'!A0",
            ),
        ]
    )
    # al_n0: acknowledged, resolved (confirmed), then reopened; al_n1: false alarm;
    # al_n2 and al_s*: still raised, well past their SLA.
    store.transition("al_n0", S.ACKNOWLEDGED, actor="t")
    store.transition("al_n0", S.RESOLVED, actor="t", outcome="removed")
    store.transition("al_n0", S.RAISED, actor="t")
    store.transition("al_n0", S.ACKNOWLEDGED, actor="t")
    store.transition("al_n0", S.RESOLVED, actor="t", outcome="removed")
    store.transition("al_n1", S.FALSE_ALARM, actor="t", outcome="false_alarm")
    with TestClient(create_api(CFG, redis_server.url)) as c:
        yield c, r, store
    r.close()


def test_percentile_interpolates() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([float(i) for i in range(11)], 0.9) == pytest.approx(9.0)


def _ev(seq: int, frm: S | None, to: S, at: float) -> AlertEvent:
    return AlertEvent(
        alert_id="a", seq=seq, from_state=frm, to_state=to, actor="x",
        at=datetime.fromtimestamp(at, UTC),
    )  # fmt: skip


T0 = 1_700_000_000.0
A = _alert("a", "north", "fire", T0)
MEASURES = [
    # (events after the raise, SLA, now, ack_s, resolve_s, breached, finished, reopened)
    ([], 300, T0 + 100, None, None, False, False, False),
    ([], 300, T0 + 301, None, None, True, False, False),  # still open past the SLA
    ([(S.RAISED, S.ACKNOWLEDGED, 120), (S.ACKNOWLEDGED, S.RESOLVED, 600)], 300, T0 + 9e3,
     120.0, 600.0, False, True, False),
    ([(S.RAISED, S.ACKNOWLEDGED, 400)], 300, T0 + 500, 400.0, None, True, False, False),
    ([(S.RAISED, S.FALSE_ALARM, 30)], 300, T0 + 9e3, None, 30.0, False, True, False),
    ([(S.RAISED, S.ACKNOWLEDGED, 10), (S.ACKNOWLEDGED, S.RESOLVED, 20), (S.RESOLVED, S.RAISED, 30),
      (S.RAISED, S.ACKNOWLEDGED, 40)], 300, T0 + 9e3, 10.0, 20.0, False, True, True),
    ([(S.RAISED, S.ACKNOWLEDGED, 999)], None, T0 + 9e3, 999.0, None, False, False, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("evs", "sla", "now", "ack", "res", "breached", "finished", "reopened"), MEASURES
)
def test_measure_handling_times(
    evs: list[tuple[S, S, float]],
    sla: float | None,
    now: float,
    ack: float | None,
    res: float | None,
    breached: bool,
    finished: bool,
    reopened: bool,
) -> None:
    events = [_ev(0, None, S.RAISED, T0)] + [
        _ev(i + 1, f, t, T0 + dt) for i, (f, t, dt) in enumerate(evs)
    ]
    m = measure(A, events, sla, now)
    assert (m.ack_s, m.resolve_s, m.breached, m.finished, m.reopened) == (
        ack, res, breached, finished, reopened
    )  # fmt: skip


def test_stats_by_township(world: tuple[TestClient, redis.Redis, AlertStore]) -> None:
    client, _, _ = world
    res = client.get("/api/stats?group_by=jurisdiction&level=township", headers=_h("admin"))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["overall"]["total"] == 5
    groups = {g["key"]: g for g in body["groups"]}
    assert set(groups) == {"north", "south"}
    n = groups["north"]
    assert n["name"] == "North town" and n["total"] == 3
    assert n["by_state"]["resolved"] == 1 and n["by_state"]["false_alarm"] == 1
    assert n["by_state"]["raised"] == 1
    assert n["verdicts"] == {"confirmed": 1, "false_alarm": 1, "pending": 1}
    assert n["precision"] == 0.5
    assert n["reopened"] == 1 and n["reopen_rate"] == 0.5  # 1 of the 2 that finished
    # Raised an hour ago, acknowledged just now: about 3600 s, past the 300 s SLA.
    assert n["time_to_acknowledge_s"]["count"] == 1
    assert 3590 < n["time_to_acknowledge_s"]["median"] < 3600 + 600
    assert n["time_to_resolve_s"]["count"] == 2  # al_n0 resolved, al_n1 dismissed
    # al_n0 acknowledged late, al_n2 never; al_n1 dismissed after the SLA too.
    assert n["sla_breaches"] == 3
    s = groups["south"]
    assert s["total"] == 2 and s["sla_breaches"] == 2 and s["precision"] is None
    days = body["by_day"]
    assert sum(d["total"] for d in days) == 5 and len(days) >= 8  # 7 days back, zero days kept
    assert body["timezone"] == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("group_by", "keys_"),
    [
        ("department", {"fire", "police"}),
        ("kind", {"fire", "plate"}),
        ("camera", {"cam-north", "cam-south"}),
        ("rule", {"fire-rule", "hotlist"}),
        ("jurisdiction", {"north", "south"}),  # each alert's own (deepest) area
    ],
)
def test_stats_group_by(
    world: tuple[TestClient, redis.Redis, AlertStore], group_by: str, keys_: set[str]
) -> None:
    client, _, _ = world
    body = client.get(f"/api/stats?group_by={group_by}", headers=_h("admin")).json()
    assert {g["key"] for g in body["groups"]} == keys_
    assert sum(g["total"] for g in body["groups"]) == 5


def test_stats_follow_the_department_scope(
    world: tuple[TestClient, redis.Redis, AlertStore],
) -> None:
    client, _, _ = world
    body = client.get("/api/stats?group_by=department", headers=_h("fire")).json()
    assert [g["key"] for g in body["groups"]] == ["fire"] and body["overall"]["total"] == 3
    narrowed = client.get("/api/stats?department=police", headers=_h("fire")).json()
    assert narrowed["overall"]["total"] == 0


def test_stats_range_is_bounded(world: tuple[TestClient, redis.Redis, AlertStore]) -> None:
    client, _, _ = world
    frm = datetime.fromtimestamp(NOW - 2000, UTC).isoformat()
    body = client.get("/api/stats", params={"from": frm, "to": NOW}, headers=_h("admin")).json()
    assert body["overall"]["total"] == 2  # only the south alerts started after
    old = client.get(f"/api/stats?from=0&to={NOW - 86400 * 30}", headers=_h("admin")).json()
    # More days than the series keeps: only days with alerts are listed (none here).
    assert old["overall"]["total"] == 0 and old["by_day"] == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=yesterday", "from: expected Unix seconds or an ISO 8601 time"),
        ("to=nan", "to: must be a finite time"),
        ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "is after to"),
        ("group_by=weather", "group_by: unknown 'weather'; expected one of jurisdiction"),
        ("group_by=kind&level=township", "level: only with group_by=jurisdiction"),
        ("level=province", "level: unknown 'province'; the hierarchy's levels are city, township"),
    ],
)
def test_stats_bad_parameters_are_422(
    world: tuple[TestClient, redis.Redis, AlertStore], query: str, message: str
) -> None:
    client, _, _ = world
    res = client.get(f"/api/stats?{query}", headers=_h("admin"))
    assert res.status_code == 422, res.text
    assert message in json.dumps(res.json()["detail"]), res.text


def _csv(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


@pytest.mark.parametrize(
    ("how", "role"),
    [
        ({"format": "csv"}, "admin"),
        ({"accept": "text/csv"}, "admin"),
        ({"format": "csv"}, "reader"),
    ],
)
def test_csv_export_is_streamed_audited_and_safe(
    world: tuple[TestClient, redis.Redis, AlertStore], how: dict[str, str], role: str
) -> None:
    client, r, _ = world
    before = r.xlen(keys.AUDIT_STREAM)
    headers = _h(role, **({"Accept": how["accept"]} if "accept" in how else {}))
    headers["X-Audit-Reason"] = "monthly report"
    url = "/api/alerts?kind=fire,plate" + ("&format=csv" if "format" in how else "")
    res = client.get(url, headers=headers)
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    assert "attachment" in res.headers["content-disposition"]
    rows = _csv(res.text)
    assert {x["id"] for x in rows} == {"al_n0", "al_n1", "al_n2", "al_s0", "al_s1"}
    plate = next(x for x in rows if x["id"] == "al_s1")
    if role == "admin":  # plates:query: the plate, neutralised as a formula
        assert plate["plate_text"] == "'=HYPERLINK(1)"
        assert plate["summary"] == "'+cmd|' /C calc'!A0"
    else:
        assert plate["plate_text"] == "" and "HYPERLINK" not in res.text
    assert all(not v.startswith(("=", "+", "-", "@")) for x in rows for v in x.values())
    n0 = next(x for x in rows if x["id"] == "al_n0")
    assert n0["jurisdiction_path"] == "city/north" and n0["state"] == "resolved"
    recs = r.xrevrange(keys.AUDIT_STREAM, count=1)
    assert r.xlen(keys.AUDIT_STREAM) == before + 1
    rec = {k.decode(): v.decode() for k, v in recs[0][1].items()}
    assert rec["action"] == "alerts.export" and rec["actor"] == f"{role}-user"
    assert "kinds=fire,plate" in rec["target"] and rec["reason"] == "monthly report"


def test_csv_export_pages_past_the_json_limit(
    world: tuple[TestClient, redis.Redis, AlertStore],
) -> None:
    client, r, store = world
    t = NOW - 86400 * 3
    store.save_new([_alert(f"al_bulk_{i:04d}", "south", "fire", t + i) for i in range(1200)])
    try:
        res = client.get("/api/alerts?format=csv&limit=1100&kind=fire", headers=_h("admin"))
        rows = _csv(res.text)
        assert len(rows) == 1100 and len({x["id"] for x in rows}) == 1100
        assert [x["started_at"] for x in rows] == sorted(
            (x["started_at"] for x in rows), reverse=True
        )
        res = client.get("/api/alerts?limit=501", headers=_h("admin"))
        assert res.status_code == 422 and "at most 500 for JSON" in res.text
        stats = client.get("/api/stats?group_by=kind", headers=_h("admin")).json()
        assert stats["overall"]["total"] == 1205
    finally:
        ids = [f"al_bulk_{i:04d}" for i in range(1200)]
        pipe = r.pipeline()
        pipe.delete(*[keys.alert_key(i) for i in ids])
        pipe.zrem(keys.ALERTS_ALL, *ids)
        pipe.zrem(keys.dept_index("fire"), *ids)
        for j in ("city", "south"):
            pipe.zrem(keys.jurisdiction_index(j), *ids)
        pipe.execute()


def test_json_list_is_unchanged_by_default(
    world: tuple[TestClient, redis.Redis, AlertStore],
) -> None:
    client, _, _ = world
    res = client.get("/api/alerts", headers=_h("admin"))
    assert res.headers["content-type"].startswith("application/json")
    assert len(res.json()) == 5
    assert client.get("/api/alerts?format=xml", headers=_h("admin")).status_code == 422


def test_day_series_uses_the_city_zone(world: tuple[TestClient, redis.Redis, AlertStore]) -> None:
    client, _, _ = world
    # 2026-12-01T17:00Z is 2026-12-02 01:00 in Asia/Shanghai.
    lo = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    hi = lo + timedelta(hours=2)
    body = client.get(
        f"/api/stats?from={lo.timestamp()}&to={hi.timestamp()}", headers=_h("admin")
    ).json()
    assert [d["date"] for d in body["by_day"]] == ["2026-12-02"]
