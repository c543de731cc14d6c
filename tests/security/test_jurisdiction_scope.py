"""Negative authorization matrix, jurisdictions: a township officer sees only its township.

Real Redis, the production FastAPI app (Starlette TestClient, in process). Two townships
(``north`` with grids, ``south``) of one synthetic city; alerts, evidence, plate reads and
cameras in each. For every route that serves jurisdiction data, an officer of one township
gets nothing of the other's: foreign alert ids answer exactly like missing ones (404, same
body), lists and statistics are filtered, the CSV export holds only its rows, camera detail
is hidden, and the WebSocket never delivers a foreign alert, event or camera status. Alerts
without a jurisdiction path (older writers) are outside every township (fail closed).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from citysight import keys
from citysight.config import CameraConfig, CitysightConfig
from citysight.contracts import Alert, AlertKind, Location, Severity
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore
from serve_app.store.cameras import CameraRegistry
from serve_app.store.evidence import EvidenceStore
from serve_app.store.feed import publish_feed
from serve_app.store.plates import PlateReads


def _box(lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [ring]}


CFG = CitysightConfig.model_validate(
    {
        "jurisdictions": {
            "source": "synthetic test polygons",
            "areas": [
                {"id": "city", "level": "city", "geometry": _box(110.0, 20.0, 110.2, 20.2)},
                {
                    "id": "north",
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
                {
                    "id": "north-g1",
                    "level": "grid",
                    "parent": "north",
                    "geometry": _box(110.0, 20.1, 110.1, 20.2),
                },
            ],
        },
        "departments": [{"id": "fire"}, {"id": "police"}],
    }
)
# Positions inside each township (north-g1 is a grid of north).
POS = {"north": (20.15, 110.05), "south": (20.05, 110.05)}
TOWNS = ("north", "south")
PRINCIPALS: dict[str, dict[str, Any]] = {
    "admin": {"department": "*", "jurisdiction": "*",
              "scopes": ["alerts:read", "alerts:dispatch", "plates:query", "cameras:write"]},
    "north": {"department": "*", "jurisdiction": "north",
              "scopes": ["alerts:read", "alerts:dispatch", "plates:query", "cameras:write"]},
    "south": {"department": "*", "jurisdiction": "south",
              "scopes": ["alerts:read", "alerts:dispatch", "plates:query", "cameras:write"]},
    "north-fire": {"department": "fire", "jurisdiction": "north",
                   "scopes": ["alerts:read", "alerts:dispatch"]},
    "grid": {"department": "*", "jurisdiction": "north-g1", "scopes": ["alerts:read"]},
    "reporter": {"department": "fire", "scopes": ["reports:write"]},
    "live-north": {"department": "*", "jurisdiction": "north",
                   "scopes": ["alerts:read", "video:live"]},
}  # fmt: skip
MISSING = "al_does_not_exist_00000"
N_PER = 3


def _tok(role: str) -> str:
    return f"tok-jur-{role}-0123456789"


def _h(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_tok(role)}"}


def _alert(aid: str, town: str, dept: str, *, kind: AlertKind = AlertKind.FIRE) -> Alert:
    lat, lon = POS[town]
    return Alert(
        id=aid,
        kind=kind,
        severity=Severity.HIGH,
        camera_id=f"cam-{town}",
        camera_ids=[f"cam-{town}"],
        location=Location(lat=lat, lon=lon),
        department=dept,
        started_at=datetime.fromtimestamp(time.time() - 600, UTC),
        plate_text="AB123" if kind is AlertKind.PLATE else None,
    )


def _ids(town: str) -> list[str]:
    return [f"al_{town}_{d}_{i}" for d in ("fire", "police") for i in range(N_PER)]


def _sees(role: str, aid: str) -> bool:
    p = PRINCIPALS[role]
    town, dept = aid.split("_")[1], aid.split("_")[2]
    in_place = p["jurisdiction"] in ("*", town) or (
        p["jurisdiction"] == "north-g1" and town == "north"
    )
    return in_place and p["department"] in ("*", dept)


@pytest.fixture(scope="module")
def world(redis_server: Any) -> Iterator[tuple[TestClient, redis.Redis]]:
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    for role, p in PRINCIPALS.items():
        rec = {"name": f"{role}-user", "role": role, **p}
        r.hset(keys.PRINCIPALS, hashlib.sha256(_tok(role).encode()).hexdigest(), json.dumps(rec))
    store = AlertStore(r, CFG)
    # The store places each alert by its position (no jurisdiction given by the writer).
    store.save_new(
        [_alert(aid, t, aid.split("_")[2]) for t in TOWNS for aid in _ids(t)]
        + [_alert(f"al_{t}_police_plate", t, "police", kind=AlertKind.PLATE) for t in TOWNS]
    )
    # An older writer's alert: no jurisdiction path at all.
    legacy = _alert("al_legacy_fire_0", "north", "fire")
    r.set(keys.alert_key(legacy.id), legacy.model_dump_json())
    r.zadd(keys.ALERTS_ALL, {legacy.id: time.time() - 600})
    r.zadd(keys.dept_index("fire"), {legacy.id: time.time() - 600})
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    ev = EvidenceStore(r, CFG)
    for t in TOWNS:
        ev.put(f"al_{t}_fire_0", jpeg)
    PlateReads(r, CFG).add_many(
        [("AB123", f"cam-{t}", time.time() - 60 + i, 0.9) for i, t in enumerate(TOWNS)]
    )
    for t in TOWNS:  # registered without a jurisdiction: placed by position
        lat, lon = POS[t]
        CameraRegistry(r).put(
            CameraConfig(id=f"cam-{t}", url=f"rtsp://10.0.0.1/{t}", latitude=lat, longitude=lon)
        )
    with TestClient(create_api(CFG, redis_server.url)) as c:
        yield c, r
    r.close()


ROLES = [r for r in PRINCIPALS if r not in ("reporter", "live-north")]  # not alert readers
ALL_IDS = [a for t in TOWNS for a in _ids(t)]


def test_alerts_are_placed_and_indexed_per_area(world: tuple[TestClient, redis.Redis]) -> None:
    client, r = world
    a = client.get("/api/alerts/al_north_fire_0", headers=_h("admin")).json()
    assert a["jurisdiction"] == "north-g1"
    assert a["jurisdiction_path"] == ["city", "north", "north-g1"]
    n = r.zcard(keys.jurisdiction_index("north"))
    assert n == len(_ids("north")) + 1 == r.zcard(keys.jurisdiction_index("north-g1"))
    assert r.zcard(keys.jurisdiction_index("city")) == len(ALL_IDS) + 2


@pytest.mark.parametrize("role", ROLES)
def test_alert_list_holds_exactly_the_scope(
    world: tuple[TestClient, redis.Redis], role: str
) -> None:
    client, _ = world
    got = client.get("/api/alerts?limit=500", headers=_h(role)).json()
    ids = {a["id"] for a in got if "plate" not in a["id"] and "legacy" not in a["id"]}
    assert ids == {a for a in ALL_IDS if _sees(role, a)}
    if PRINCIPALS[role]["jurisdiction"] != "*":
        assert all(PRINCIPALS[role]["jurisdiction"] in a["jurisdiction_path"] for a in got)
        assert "al_legacy_fire_0" not in {a["id"] for a in got}  # no path: fail closed


ALERT_ROUTES = [
    ("GET", "/api/alerts/{id}", None),
    ("GET", "/api/alerts/{id}/events", None),
    ("GET", "/api/alerts/{id}/evidence", None),
    ("POST", "/api/alerts/{id}/evidence/unredacted", {"reason": "checking the scope"}),
    ("POST", "/api/alerts/{id}/transitions", {"to": "acknowledged"}),
    ("GET", "/api/alerts/{id}/evidence/ev_0", None),
    ("POST", "/api/alerts/{id}/evidence/ev_0/unredacted", {"reason": "checking the scope"}),
    ("GET", "/api/alerts/{id}/clip", None),
    ("POST", "/api/alerts/{id}/clip/unredacted", {"reason": "checking the scope"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ALERT_ROUTES)
@pytest.mark.parametrize("role", ["north", "south", "north-fire", "grid"])
def test_foreign_alert_ids_answer_like_missing_ones(
    world: tuple[TestClient, redis.Redis], method: str, path: str, body: Any, role: str
) -> None:
    client, _ = world
    missing = client.request(method, path.format(id=MISSING), json=body, headers=_h(role))
    # 404, or 403 first where the role lacks the route's scope (grid has no dispatch)
    assert missing.status_code == (403 if role == "grid" and "transitions" in path else 404)
    foreign = [a for a in [*ALL_IDS, "al_legacy_fire_0"] if not _sees(role, a)]
    assert foreign
    for aid in foreign:
        res = client.request(method, path.format(id=aid), json=body, headers=_h(role))
        assert res.status_code == missing.status_code, (role, aid, res.text)
        assert res.json() == missing.json()


def test_feedback_photos_on_another_townships_alert_answer_like_missing(
    world: tuple[TestClient, redis.Redis],
) -> None:
    client, _ = world
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()

    def post(aid: str) -> Any:
        return client.post(
            f"/api/alerts/{aid}/feedback",
            files={"photos": ("after.jpg", jpeg, "image/jpeg")},
            data={"note": "after"},
            headers=_h("north"),
        )

    missing = post(MISSING)
    assert missing.status_code == 404
    res = post("al_south_fire_0")
    assert res.status_code == 404 and res.json() == missing.json()


def test_live_view_of_another_townships_camera_answers_like_a_missing_one(
    world: tuple[TestClient, redis.Redis],
) -> None:
    from starlette.testclient import WebSocketDenialResponse

    client, _ = world
    codes = {}
    for cam in ("cam-south", "cam-missing"):
        with (
            pytest.raises(WebSocketDenialResponse) as ei,
            client.websocket_connect(f"/ws/live/{cam}", headers=_h("live-north")),
        ):
            pass
        codes[cam] = (ei.value.status_code, ei.value.json())
    assert codes["cam-south"] == codes["cam-missing"] and codes["cam-south"][0] == 404


def test_own_alerts_are_reachable(world: tuple[TestClient, redis.Redis]) -> None:
    client, _ = world
    assert client.get("/api/alerts/al_north_fire_1", headers=_h("north")).status_code == 200
    assert client.get("/api/alerts/al_north_fire_1", headers=_h("grid")).status_code == 200
    res = client.get("/api/alerts/al_south_fire_0/evidence", headers=_h("south"))
    assert res.status_code == 200 and res.headers["x-redacted"] == "true"


@pytest.mark.parametrize("role", ROLES)
def test_cameras_and_map_config_are_scoped(
    world: tuple[TestClient, redis.Redis], role: str
) -> None:
    client, _ = world
    jur = PRINCIPALS[role]["jurisdiction"]
    want = {f"cam-{t}" for t in TOWNS if jur in ("*", t) or (jur == "north-g1" and t == "north")}
    cams = client.get("/api/cameras", headers=_h(role)).json()
    assert {c["id"] for c in cams} == want
    m = client.get("/api/config/map", headers=_h(role)).json()
    assert {c["id"] for c in m["cameras"]} == want
    areas = {a["id"] for a in m["jurisdictions"]["areas"]}
    if jur == "*":
        assert areas == {"city", "north", "south", "north-g1"}
    else:
        assert "south" not in areas or jur == "south"
        assert jur in areas and "city" not in areas
    for t in TOWNS:
        res = client.get(f"/api/cameras/cam-{t}", headers=_h(role))
        assert res.status_code == (200 if f"cam-{t}" in want else 404)
        if res.status_code == 404:
            assert res.json() == client.get("/api/cameras/nope", headers=_h(role)).json()


def test_camera_writes_stay_in_the_jurisdiction(world: tuple[TestClient, redis.Redis]) -> None:
    client, _ = world
    lat, lon = POS["south"]
    body = {"id": "cam-new", "url": "rtsp://10.0.0.9/x", "latitude": lat, "longitude": lon}
    res = client.post("/api/cameras", json=body, headers=_h("north"))
    assert res.status_code == 403 and "outside your jurisdiction" in res.json()["detail"]
    foreign = {"id": "cam-south", "url": "rtsp://10.0.0.1/s", "latitude": lat, "longitude": lon}
    assert (
        client.put("/api/cameras/cam-south", json=foreign, headers=_h("north")).status_code == 404
    )
    assert client.delete("/api/cameras/cam-south", headers=_h("north")).status_code == 404
    unknown = {**body, "id": "cam-x", "jurisdiction": "atlantis"}
    res = client.post("/api/cameras", json=unknown, headers=_h("admin"))
    assert res.status_code == 422 and "unknown jurisdiction" in res.json()["detail"]
    assert client.get("/api/cameras/cam-south", headers=_h("admin")).status_code == 200


@pytest.mark.parametrize("role", ["admin", "north", "south"])
def test_plate_reads_only_from_cameras_in_scope(
    world: tuple[TestClient, redis.Redis], role: str
) -> None:
    client, _ = world
    res = client.post("/api/plates/AB123/reads", json={"reason": "scope test"}, headers=_h(role))
    assert res.status_code == 200
    cams = {x["camera_id"] for x in res.json()["reads"]}
    jur = PRINCIPALS[role]["jurisdiction"]
    assert cams == ({"cam-north", "cam-south"} if jur == "*" else {f"cam-{jur}"})


@pytest.mark.parametrize("role", ROLES)
def test_statistics_and_csv_export_are_scoped(
    world: tuple[TestClient, redis.Redis], role: str
) -> None:
    client, _ = world
    mine = [a for a in ALL_IDS if _sees(role, a)]
    st = client.get("/api/stats?group_by=jurisdiction&level=township", headers=_h(role))
    assert st.status_code == 200, st.text
    body = st.json()
    towns = {g["key"] for g in body["groups"]}
    jur = PRINCIPALS[role]["jurisdiction"]
    if jur != "*":
        assert towns == {"north" if jur == "north-g1" else jur}
        plates = 1 if PRINCIPALS[role]["department"] == "*" else 0
        assert body["overall"]["total"] == len(mine) + plates
    res = client.get("/api/alerts?format=csv", headers=_h(role))
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    rows = res.text.lstrip("\ufeff").splitlines()[1:]
    exported = {line.split(",")[0] for line in rows}
    assert {a for a in exported if "plate" not in a and "legacy" not in a} == set(mine)


def _incident_seed(r: redis.Redis) -> None:
    # One cross-township incident: both alerts share an incident id.
    store = AlertStore(r, CFG)
    store.save_new(
        [
            _alert("al_inc_north", "north", "fire").model_copy(update={"incident_id": "inc_1"}),
            _alert("al_inc_south", "south", "fire").model_copy(update={"incident_id": "inc_1"}),
        ]
    )


def test_incidents_keep_only_the_townships_alerts(world: tuple[TestClient, redis.Redis]) -> None:
    client, r = world
    _incident_seed(r)
    got = client.get("/api/incidents/inc_1", headers=_h("north")).json()
    assert got["alert_ids"] == ["al_inc_north"] and got["camera_ids"] == ["cam-north"]
    listed = client.get("/api/incidents", headers=_h("south")).json()
    assert [i["alert_ids"] for i in listed if i["incident_id"] == "inc_1"] == [["al_inc_south"]]


def test_websocket_never_delivers_another_townships_messages(
    world: tuple[TestClient, redis.Redis],
) -> None:
    """Replay and live: alerts, alert events and camera status of the other township never
    reach the socket; a sentinel of its own township ends the wait (no fixed sleep)."""
    client, r = world
    store = AlertStore(r, CFG)
    with client.websocket_connect("/ws?last_id=0-0", headers=_h("north")) as ws:
        store.save_new([_alert("al_south_live", "south", "fire")])
        store.transition("al_south_fire_2", "acknowledged", actor="x")  # type: ignore[arg-type]
        pipe = r.pipeline()
        for t in TOWNS:
            lat, lon = POS[t]
            publish_feed(
                pipe, type="camera_status", payload={"camera_id": f"cam-{t}", "state": "running"},
                department="fire", kind="camera_offline", camera_id=f"cam-{t}",
                severity="info", lat=lat, lon=lon, jurisdictions=CFG.jurisdiction_path(t),
            )  # fmt: skip
        # A camera status without a path (older writer): never to a scoped subscriber.
        publish_feed(
            pipe, type="camera_status", payload={"camera_id": "cam-north"}, department="fire",
            kind="camera_offline", camera_id="cam-north-legacy", severity="info", lat=0, lon=0,
        )  # fmt: skip
        pipe.execute()
        store.save_new([_alert("al_north_sentinel", "north", "fire")])
        got: list[dict[str, Any]] = []
        while not any(m.get("alert", {}).get("id") == "al_north_sentinel" for m in got):
            msg = json.loads(ws.receive_text())
            if msg["type"] != "heartbeat":
                got.append(msg)
    ids = [m["alert"]["id"] for m in got if m["type"] in ("alert", "alert_event")]
    assert ids and all(i.startswith(("al_north", "al_inc_north")) for i in ids), ids
    cams = [m["camera_status"]["camera_id"] for m in got if m["type"] == "camera_status"]
    assert cams == ["cam-north"], cams


# Routes that serve no jurisdiction data (city-wide or the caller's own) and why.
NOT_JURISDICTION_DATA = {
    "/health": "liveness and component health, not alerts",
    "/metrics": "service metrics (monitoring:read)",
    "/api/me": "the caller's own principal",
    "/api/ws-tickets": "a ticket for the caller's own socket (scoped like its token)",
    "/api/audit": "audit:read, which config refuses to jurisdiction-scoped tokens",
    "/api/audit/verify": "audit:read, as above",
    "/api/config/map/overlays/{index}": "static map layers from the config, city-wide",
    "/api/reports": "the caller's own field reports (GET mine=1); a new report is an alert, "
    "placed and scoped like any other",
    "/api/reports/config": "the report kinds and limits for the phone page",
}
COVERED = {
    "/api/alerts", "/api/alerts/{alert_id}", "/api/alerts/{alert_id}/events",
    "/api/alerts/{alert_id}/evidence", "/api/alerts/{alert_id}/evidence/unredacted",
    "/api/alerts/{alert_id}/transitions", "/api/cameras", "/api/cameras/{camera_id}",
    "/api/config/map", "/api/plates/{plate}/reads", "/api/stats", "/api/incidents",
    "/api/incidents/{incident_id}", "/api/alerts/{alert_id}/evidence/{item_id}",
    "/api/alerts/{alert_id}/evidence/{item_id}/unredacted", "/api/alerts/{alert_id}/feedback",
    "/api/alerts/{alert_id}/clip", "/api/alerts/{alert_id}/clip/unredacted",
}  # fmt: skip


def test_every_api_route_is_in_the_jurisdiction_matrix(
    world: tuple[TestClient, redis.Redis],
) -> None:
    """A new route must be added to the matrix above (or named as city-wide, with why)."""
    client, _ = world
    # The OpenAPI document lists every route of every included router (the app's own
    # route list holds the routers as opaque entries).
    spec = client.get("/openapi.json").json()
    paths = {p for p in spec["paths"] if p.startswith("/api") or p in NOT_JURISDICTION_DATA}
    assert "/api/alerts" in paths and "/api/stats" in paths  # the listing is real
    unknown = sorted(paths - COVERED - set(NOT_JURISDICTION_DATA))
    assert not unknown, f"routes missing from the jurisdiction matrix: {unknown}"


# Last: it adds an alert to the module's world that the counts above do not expect.
def test_a_field_report_is_placed_by_its_position_and_scoped(
    world: tuple[TestClient, redis.Redis],
) -> None:
    """A report sent from inside South (no camera near) is South's: North never sees it."""
    client, _ = world
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    lat, lon = POS["south"]
    res = client.post(
        "/api/reports",
        data={"latitude": str(lat + 0.02), "longitude": str(lon + 0.1), "kind": "fire"},
        files=[("photos", ("p.jpg", jpeg, "image/jpeg"))],
        headers=_h("reporter"),
    )
    assert res.status_code == 201, res.text
    aid = res.json()["alert_id"]
    a = client.get(f"/api/alerts/{aid}", headers=_h("admin")).json()
    assert a["jurisdiction_path"] == ["city", "south"] and a["source"] == "report"
    assert client.get(f"/api/alerts/{aid}", headers=_h("south")).status_code == 200
    assert client.get(f"/api/alerts/{aid}", headers=_h("north")).status_code == 404
