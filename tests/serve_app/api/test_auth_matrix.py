"""Negative authorization matrix: every route × every role × alerts of three departments.

Real Redis, the production FastAPI app (Starlette TestClient, in process). Asserts 0
cross-department leaks, BOLA (foreign ids answer exactly like missing ones), BFLA (write
routes refuse tokens without the scope) and BOPLA (no unredacted evidence or plate data
without the scope). Escalated alerts (SLA escalation to ``duty``) are in scope for their
owner *and* ``duty``, and for no other department.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from benchmarks.fanout.world import ROLES, make_alert, seed_principals, token_of
from citysight.config import CameraConfig, CitysightConfig
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore
from serve_app.store.cameras import CameraRegistry
from serve_app.store.evidence import EvidenceStore
from serve_app.store.plates import PlateReads

DEPTS = ("fire", "enforcement", "police")
ROLE_NAMES = list(ROLES)
MISSING_ID = "al_does_not_exist_00000"
# The supervisors: fire and police escalate to duty after 60 s without acknowledgement.
DUTY = {"duty": {"department": "duty", "scopes": ["alerts:read", "alerts:dispatch"]}}
ALL_ROLES = {**ROLES, **DUTY}
ESC_ROLES = list(ALL_ROLES)
ESC_DEPTS = ("fire", "police")
CFG = CitysightConfig.model_validate(
    {
        "site": {"timezone": "Asia/Shanghai"},
        "departments": [
            {"id": "fire", "supervisor": "duty", "ack_sla_s": 60},
            {"id": "enforcement"},
            {"id": "police", "supervisor": "duty", "ack_sla_s": 60},
            {"id": "duty"},
        ],
    }
)


def _sees(role: str, dept: str) -> bool:
    d = ROLES[role]["department"]
    return d == "*" or d == dept


def _sees_escalated(role: str, owner: str) -> bool:
    """An alert of ``owner`` escalated to duty: the owner, duty and admins see it."""
    d = ALL_ROLES[role]["department"]
    return d in ("*", owner, "duty")


def _esc_id(dept: str, k: int) -> str:
    return f"al_{dept}_{300 + k:06d}"


def _has(role: str, scope: str) -> bool:
    return scope in ROLES[role]["scopes"]


def _h(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(role)}"}


@pytest.fixture(scope="module")
def client(redis_server: Any) -> Iterator[TestClient]:
    """App over a Redis seeded with principals, alerts, evidence, plates and a camera."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    cfg = CFG
    seed_principals(r, ALL_ROLES)
    store = AlertStore(r, cfg)
    alerts = [make_alert(i, d) for d in DEPTS for i in range(3)]
    # One private alert per (role, department) for transition tests.
    alerts += [make_alert(100 + k, d) for d in DEPTS for k in range(len(ROLE_NAMES))]
    store.save_new(alerts)
    # Escalated alerts: raised an hour ago, never acknowledged, escalated by the real SLA
    # sweep (one to look at, plus one private alert per role for transitions).
    now = time.time()
    overdue = [
        make_alert(300 + k, d, t=now - 3600 + k).model_copy(update={"raised_at": now - 3600})
        for d in ESC_DEPTS
        for k in range(len(ESC_ROLES) + 1)
    ]
    store.save_new(overdue)
    escalated = store.escalate_overdue(now=now)
    assert {a.id for a in escalated} == {a.id for a in overdue}
    img = np.full((96, 96, 3), 128, np.uint8)
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    ev = EvidenceStore(r, cfg)
    for d in DEPTS:
        ev.put(f"al_{d}_000000", jpeg)
    for d in ESC_DEPTS:
        ev.put(_esc_id(d, 0), jpeg)
    PlateReads(r, cfg).add_many([("AB123", "cam-police", time.time() - 60, 0.9)])
    CameraRegistry(r).put(
        CameraConfig(
            id="cam-1",
            url="rtsp://operator@10.1.2.3:554/live",
            url_password_env="CAM1_PASSWORD",
            latitude=22.0,
            longitude=110.0,
        )
    )
    with TestClient(create_api(cfg, redis_server.url)) as c:
        yield c
    r.close()


ALERT_ROUTES = ["/api/alerts/{id}", "/api/alerts/{id}/events", "/api/alerts/{id}/evidence"]


@pytest.mark.parametrize("role", ROLE_NAMES)
@pytest.mark.parametrize("dept", DEPTS)
def test_object_level_access(client: TestClient, role: str, dept: str) -> None:
    """BOLA: a foreign alert answers exactly like a missing one on every alert route."""
    aid = f"al_{dept}_000000"
    for route in ALERT_ROUTES:
        got = client.get(route.format(id=aid), headers=_h(role))
        missing = client.get(route.format(id=MISSING_ID), headers=_h(role))
        if not _has(role, "alerts:read"):
            assert got.status_code == missing.status_code == 403, route
        elif _sees(role, dept):
            assert got.status_code == 200, (route, got.text)
            assert missing.status_code == 404
        else:
            assert got.status_code == 404, (route, got.text)
            assert (got.status_code, got.json()) == (missing.status_code, missing.json())


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_list_never_leaks(client: TestClient, role: str) -> None:
    """Lists hold only in-scope departments; client filters narrow but cannot widen."""
    r = client.get("/api/alerts?limit=500", headers=_h(role))
    if not _has(role, "alerts:read"):
        assert r.status_code == 403
        return
    assert r.status_code == 200
    depts = {a["department"] for a in r.json()}
    assert depts == {d for d in DEPTS if _sees(role, d)}
    for d in DEPTS:
        narrowed = client.get(f"/api/alerts?department={d}&limit=500", headers=_h(role)).json()
        assert all(a["department"] == d for a in narrowed)
        assert bool(narrowed) == _sees(role, d)
        kind = make_alert(0, d).kind.value
        by_kind = client.get(f"/api/alerts?kind={kind}&limit=500", headers=_h(role)).json()
        assert all(a["department"] == d for a in by_kind)
        assert bool(by_kind) == _sees(role, d)
    inc = client.get("/api/incidents", headers=_h(role))
    assert inc.status_code == 200


@pytest.mark.parametrize("role", ROLE_NAMES)
@pytest.mark.parametrize("dept", DEPTS)
def test_transitions_function_level(client: TestClient, role: str, dept: str) -> None:
    """BFLA: only alerts:dispatch may transition, and only in-scope alerts."""
    aid = f"al_{dept}_{100 + ROLE_NAMES.index(role):06d}"
    r = client.post(f"/api/alerts/{aid}/transitions", json={"to": "acknowledged"}, headers=_h(role))
    if not _has(role, "alerts:dispatch"):
        assert r.status_code == 403
        assert "alerts:dispatch" in r.json()["detail"] or "alerts:read" in r.json()["detail"]
    elif not _sees(role, dept):
        assert r.status_code == 404
    else:
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "acknowledged"
        events = client.get(f"/api/alerts/{aid}/events", headers=_h(role)).json()
        assert [e["to_state"] for e in events] == ["raised", "acknowledged"]
        assert events[-1]["actor"] == f"{role}-user"


@pytest.mark.parametrize("role", ESC_ROLES)
@pytest.mark.parametrize("dept", ESC_DEPTS)
def test_escalated_alert_object_level_access(client: TestClient, role: str, dept: str) -> None:
    """Issue 11: after escalation the owner still sees its alert, duty gains it, the other
    departments still get exactly the 404 of a missing alert."""
    aid = _esc_id(dept, 0)
    for route in ALERT_ROUTES:
        got = client.get(route.format(id=aid), headers=_h(role))
        missing = client.get(route.format(id=MISSING_ID), headers=_h(role))
        if not ALL_ROLES[role]["scopes"] or "alerts:read" not in ALL_ROLES[role]["scopes"]:
            assert got.status_code == missing.status_code == 403, route
        elif _sees_escalated(role, dept):
            assert got.status_code == 200, (route, got.text)
            if route == "/api/alerts/{id}":
                body = got.json()
                assert body["department"] == dept and body["escalated_to"] == ["duty"]
                assert body["escalated"] is True
        else:
            assert got.status_code == 404, (route, got.text)
            assert (got.status_code, got.json()) == (missing.status_code, missing.json())
    events = client.get(f"/api/alerts/{aid}/events", headers=_h("admin")).json()
    assert [(e["actor"], e["to_state"]) for e in events] == [("rules", "raised"), ("sla", "raised")]


@pytest.mark.parametrize("role", ESC_ROLES)
@pytest.mark.parametrize("dept", ESC_DEPTS)
def test_escalated_alert_transitions(client: TestClient, role: str, dept: str) -> None:
    """Owner and supervisor may act on an escalated alert; other departments get 404."""
    aid = _esc_id(dept, 1 + ESC_ROLES.index(role))
    r = client.post(f"/api/alerts/{aid}/transitions", json={"to": "acknowledged"}, headers=_h(role))
    scopes = ALL_ROLES[role]["scopes"]
    if "alerts:dispatch" not in scopes or "alerts:read" not in scopes:
        assert r.status_code == 403
    elif not _sees_escalated(role, dept):
        assert r.status_code == 404
        # Exactly a missing id's answer (BOLA); the body has the error fields of
        # serve_app/errors.py besides the English detail.
        missing = client.post(
            f"/api/alerts/{MISSING_ID}/transitions", json={"to": "acknowledged"}, headers=_h(role)
        )
        assert r.json() == missing.json()
        assert r.json()["detail"] == "alert not found" and r.json()["code"] == "not_found"
    else:
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"] == "acknowledged"
        assert body["department"] == dept and body["escalated_to"] == ["duty"]


@pytest.mark.parametrize("role", ESC_ROLES)
def test_escalated_alerts_in_lists(client: TestClient, role: str) -> None:
    """Lists and the department filter include escalated alerts for owner and duty only."""
    r = client.get("/api/alerts?limit=500", headers=_h(role))
    if "alerts:read" not in ALL_ROLES[role]["scopes"]:
        assert r.status_code == 403
        return
    listed = {a["id"] for a in r.json()}
    esc = {_esc_id(d, k) for d in ESC_DEPTS for k in range(len(ESC_ROLES) + 1)}
    want = {a for a in esc if _sees_escalated(role, a.split("_")[1])}
    assert listed & esc == want
    if role == "duty":
        assert listed == esc  # nothing of its own, everything escalated to it
    # ?department= narrows to one department's alerts: owned or gained by escalation.
    mine = ALL_ROLES[role]["department"]
    for d in ("duty", *ESC_DEPTS):
        got = client.get(f"/api/alerts?department={d}&limit=500", headers=_h(role)).json()
        ids = {a["id"] for a in got}
        if mine not in ("*", d):
            assert got == []  # a department outside the scope: nothing, never a widening
        elif d == "duty":
            assert ids == esc
        else:
            assert ids & esc == {a for a in esc if a.split("_")[1] == d}


def test_forbidden_transition_lists_allowed(client: TestClient) -> None:
    """409 names the allowed moves; a missing unit is a 422."""
    r = client.post(
        "/api/alerts/al_fire_000001/transitions", json={"to": "closed"}, headers=_h("fire")
    )
    assert r.status_code == 409
    assert r.json()["detail"]["allowed"] == ["acknowledged", "assigned", "false_alarm"]
    r = client.post(
        "/api/alerts/al_fire_000001/transitions", json={"to": "assigned"}, headers=_h("fire")
    )
    assert r.status_code == 422 and "unit" in r.json()["detail"]
    r = client.post(
        "/api/alerts/al_fire_000001/transitions", json={"to": "nowhere"}, headers=_h("fire")
    )
    assert r.status_code == 422 and "to" in r.json()["detail"]


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_unredacted_evidence_property_level(client: TestClient, role: str) -> None:
    """BOPLA: unredacted evidence needs the scope and a reason, and is audited."""
    for dept in DEPTS:
        url = f"/api/alerts/al_{dept}_000000/evidence/unredacted"
        r = client.post(url, json={"reason": "case 42"}, headers=_h(role))
        if not _has(role, "alerts:read") or (
            _sees(role, dept) and not _has(role, "evidence:unredacted")
        ):
            assert r.status_code == 403
        elif not _sees(role, dept):
            assert r.status_code == 404
        else:
            assert r.status_code == 200
            assert r.headers["content-type"] == "image/jpeg"
            assert r.headers["x-redacted"] == "false"
            assert client.post(url, json={}, headers=_h(role)).status_code == 422  # no reason
        redacted = client.get(f"/api/alerts/al_{dept}_000000/evidence", headers=_h(role))
        if _has(role, "alerts:read") and _sees(role, dept):
            assert redacted.headers["x-redacted"] == "true"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_plates_and_audit_scopes(client: TestClient, role: str) -> None:
    """Plate reads need plates:query (and are audited); the audit log needs audit:read."""
    r = client.post("/api/plates/AB123/reads", json={"reason": "case 42"}, headers=_h(role))
    if _has(role, "plates:query"):
        assert r.status_code == 200
        assert r.json()["reads"][0]["camera_id"] == "cam-police"
    else:
        assert r.status_code == 403
        assert "plate" not in r.text.lower().replace("plates:query", "")
    a = client.get("/api/audit", headers=_h(role))
    assert a.status_code == (200 if _has(role, "audit:read") else 403)


def test_audit_records_sensitive_reads(client: TestClient) -> None:
    """Unredacted views and plate queries leave hash-chained audit records."""
    client.post(
        "/api/alerts/al_police_000000/evidence/unredacted",
        json={"reason": "warrant 7"},
        headers=_h("police"),
    )
    client.post("/api/plates/AB123/reads", json={"reason": "case 42"}, headers=_h("police"))
    body = client.get("/api/audit", headers=_h("admin")).json()
    assert body["chain_ok"] is True
    actions = {(x["actor"], x["action"]) for x in body["records"]}
    assert ("police-user", "evidence.unredacted") in actions
    assert ("police-user", "plates.query") in actions
    assert any(x.get("reason") == "warrant 7" for x in body["records"])


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_camera_routes(client: TestClient, role: str) -> None:
    """Everyone with alerts:read lists cameras without credentials; writes need the scope."""
    r = client.get("/api/cameras", headers=_h(role))
    if not _has(role, "alerts:read"):
        assert r.status_code == 403
    else:
        cam = r.json()[0]
        assert cam["url"] == "rtsp://10.1.2.3:554/live"
        assert "operator" not in r.text and "url_password_env" not in cam
        assert cam["health"] == {"state": "unknown"}
    body = {"id": f"new-{role}", "url": "rtsp://10.9.9.9/s", "latitude": 1, "longitude": 2}
    w = client.post("/api/cameras", json=body, headers=_h(role))
    p = client.put(f"/api/cameras/new-{role}", json={**body, "name": "n"}, headers=_h(role))
    d = client.delete(f"/api/cameras/new-{role}", headers=_h(role))
    if _has(role, "cameras:write"):
        assert (w.status_code, p.status_code, d.status_code) == (201, 200, 204)
    else:
        assert (w.status_code, p.status_code, d.status_code) == (403, 403, 403)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"id": "x1", "url": "file:///etc/passwd", "latitude": 1, "longitude": 2}, 422, "url"),
        ({"id": "x2", "url": "rtsp://169.254.169.254/", "latitude": 1, "longitude": 2}, 422, "url"),
        ({"id": "x3", "url": "rtsp://u:pw@h/s", "latitude": 1, "longitude": 2}, 422, "password"),
        ({"id": "x4", "url": "rtsp://h/s", "latitude": 91, "longitude": 2}, 422, "latitude"),
        ({"id": "x5", "url": "rtsp://h/s", "latitude": 1, "longitude": 2, "typo": 1}, 422, "typo"),
        ({"id": "cam-1", "url": "rtsp://h/s", "latitude": 1, "longitude": 2}, 409, "exists"),
    ],
)
def test_camera_validation(
    client: TestClient, body: dict[str, Any], status: int, needle: str
) -> None:
    """Camera bodies are validated as CameraConfig plus the URL policy; errors are JSON."""
    r = client.post("/api/cameras", json=body, headers=_h("admin"))
    assert r.status_code == status, r.text
    assert needle in str(r.json()["detail"])
    assert "pw" not in r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/alerts"),
        ("GET", "/api/alerts/al_fire_000000"),
        ("GET", "/api/alerts/al_fire_000000/events"),
        ("GET", "/api/alerts/al_fire_000000/evidence"),
        ("POST", "/api/alerts/al_fire_000000/evidence/unredacted"),
        ("POST", "/api/alerts/al_fire_000000/transitions"),
        ("GET", "/api/incidents"),
        ("GET", "/api/cameras"),
        ("POST", "/api/cameras"),
        ("PUT", "/api/cameras/cam-1"),
        ("DELETE", "/api/cameras/cam-1"),
        ("POST", "/api/plates/AB123/reads"),
        ("GET", "/api/audit"),
        ("GET", "/api/me"),
        ("GET", "/api/config/map"),
        ("POST", "/api/ws-tickets"),
    ],
)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_unauthenticated(client: TestClient, method: str, path: str, token: str | None) -> None:
    """Every /api route answers 401 with a JSON detail without a valid token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = client.request(method, path, headers=headers)
    assert r.status_code == 401
    assert r.json()["detail"]


def test_me_health_metrics_openapi(client: TestClient) -> None:
    """The open routes and the caller's own principal."""
    me = client.get("/api/me", headers=_h("police")).json()
    assert me == {
        "name": "police-user",
        "role": "police",
        "department": "police",
        "scopes": sorted(ROLES["police"]["scopes"]),
        "jurisdiction": "*",
    }
    public = client.get("/health")  # a remote caller without a token: liveness only
    assert public.status_code == 200 and set(public.json()) == {"status"}
    h = client.get("/health", headers=_h("admin"))  # admin holds monitoring:read
    assert h.status_code == 200
    comps = h.json()["components"]
    assert {"redis", "ray", "rules", "inference", "streams", "ingress"} <= set(comps)
    assert comps["redis"]["state"] == "running"
    assert client.get("/metrics").status_code == 401
    m = client.get("/metrics", headers=_h("admin")).text
    for name in (
        "citysight_ws_clients",
        "citysight_ws_delivery_ms_bucket",
        "citysight_alerts_total",
    ):
        assert name in m
    assert "/api/alerts" in client.get("/openapi.json").json()["paths"]
    t = client.post("/api/ws-tickets", headers=_h("fire")).json()
    assert t["expires_in"] == 30 and len(t["ticket"]) > 20
    mp = client.get("/api/config/map", headers=_h("fire")).json()
    assert mp["cameras"][0]["id"] == "cam-1" and "url" not in mp["cameras"][0]
    assert mp["timezone"] == "Asia/Shanghai"  # the map shows times in the city's zone


@pytest.mark.parametrize(
    ("query", "needle", "code"),
    [("limit=501", "limit", 422), ("kind=dragon", "kind", 422), ("since=yesterday", "since", 400)],
)
def test_validation_errors_are_json(client: TestClient, query: str, needle: str, code: int) -> None:
    """Bad query values answer 422 (400 for times, tests/serve_app/api/test_bad_input.py)."""
    r = client.get(f"/api/alerts?{query}", headers=_h("admin"))
    assert r.status_code == code
    assert needle in r.json()["detail"]


def test_map_page_served_when_present(client: TestClient) -> None:
    """``/`` serves serve_app/static/index.html (and /static/ the folder) when they exist."""
    from serve_app.http import STATIC_DIR

    r = client.get("/")
    if (STATIC_DIR / "index.html").is_file():
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert client.get("/static/index.html").status_code == 200
    else:
        assert r.status_code == 404


@pytest.mark.parametrize("page", ["/", "/report"])
def test_pages_name_an_icon_that_is_served(client: TestClient, page: str) -> None:
    """Each page links its icon (Chromium otherwise asks for /favicon.ico: a 404 in the
    console on every load); the icon is served without a token."""
    html = client.get(page).text
    assert '<link rel="icon" href="/static/favicon.svg"' in html
    r = client.get("/static/favicon.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
