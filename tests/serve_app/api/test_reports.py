"""Field reports and feedback photos through the production API on a real Redis.

A grid worker's report raises a ``source: report`` alert routed like any alert, with the
nearest camera running a rule of its kind; a second report nearby joins it; the reporter
follows their own reports; a dispatcher adds an "after" photo. Every bad input answers a
4xx naming the problem and stores nothing (no alert, no evidence, no index entry).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from benchmarks.fanout.world import ROLES, seed_principals, token_of
from citysight.config import CitysightConfig
from citysight.contracts import AlertState
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore

GRID = {"grid": {"department": "enforcement", "scopes": ["reports:write"]},
        "grid2": {"department": "enforcement", "scopes": ["reports:write"]}}  # fmt: skip
CFG = CitysightConfig.model_validate({
    "departments": [{"id": d} for d in ("fire", "enforcement", "police")],
    "routing": [{"kind": "vending", "department": "enforcement"},
                {"kind": "road_damage", "department": "enforcement"},
                {"kind": "*", "department": "fire"}],
    "cameras": [
        {"id": "cam-vend", "url": "rtsp://10.0.0.1/v", "latitude": 20.0395, "longitude": 110.338,
         "jurisdiction": "meilan"},
        {"id": "cam-other", "url": "rtsp://10.0.0.2/o", "latitude": 20.0396, "longitude": 110.3381,
         "jurisdiction": "meilan"},
    ],
    "rules": [
        {"id": "vending", "type": "dwell", "kind": "vending", "classes": ["person"],
         "cameras": ["cam-vend"], "recheck_s": 60},
    ],
    "reports": {"max_photos": 3, "max_photo_bytes": 300_000, "max_pixels": 4_000_000},
})  # fmt: skip
HERE = {"latitude": "20.03962", "longitude": "110.33805"}


def _jpeg(w: int = 320, h: int = 240, seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="JPEG", quality=80)
    return out.getvalue()


def _h(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(role)}"}


@pytest.fixture
def client(redis_url: str) -> Iterator[tuple[TestClient, redis.Redis]]:
    r = redis.Redis.from_url(redis_url)
    seed_principals(r, {**ROLES, **GRID})
    with TestClient(create_api(CFG, redis_url)) as c:
        yield c, r
    r.close()


def _report(c: TestClient, role: str = "grid", photos: int = 1, **fields: str) -> Any:
    data = {**HERE, "kind": "vending", "note": "stall on the pavement", **fields}
    files = [("photos", (f"p{i}.jpg", _jpeg(seed=i), "image/jpeg")) for i in range(photos)]
    return c.post("/api/reports", headers=_h(role), data=data, files=files)


def _stored(r: redis.Redis) -> dict[str, int]:
    return {p: len(list(r.scan_iter(f"citysight:{p}*"))) for p in ("alert", "evidence", "reports")}


def test_report_raises_a_routed_alert_with_its_photos(
    client: tuple[TestClient, redis.Redis],
) -> None:
    c, r = client
    t0 = time.perf_counter()
    res = _report(c, photos=2)
    ms = (time.perf_counter() - t0) * 1000
    assert res.status_code == 201, res.text
    body = res.json()
    assert body["created"] is True and body["department"] == "enforcement"
    a = c.get(f"/api/alerts/{body['alert_id']}", headers=_h("admin")).json()
    assert a["source"] == "report" and a["reporter"] == "grid-user"
    assert a["camera_id"] == "cam-vend"  # nearest camera that runs a vending rule
    assert a["jurisdiction"] == "meilan" and a["state"] == "raised"
    assert a["location"] == {"lat": 20.03962, "lon": 110.33805}
    assert [e["source"] for e in a["evidence"]] == ["report", "report"]
    for e in a["evidence"]:
        assert 0 < r.ttl(e["key"]) <= CFG.retention.evidence_ttl_s  # retention like snapshots
    (ev,) = c.get(f"/api/alerts/{a['id']}/events", headers=_h("admin")).json()
    assert ev["actor"] == "grid-user" and ev["action"] == "report"
    assert ev["evidence"] == body["photos"]
    # The first photo is the alert's picture; each item is served (redacted) by its id.
    main = c.get(f"/api/alerts/{a['id']}/evidence", headers=_h("enforcement"))
    assert main.status_code == 200 and main.headers["x-redacted"] == "true"
    for pid in body["photos"]:
        item = c.get(f"/api/alerts/{a['id']}/evidence/{pid}", headers=_h("enforcement"))
        assert item.status_code == 200 and item.content.startswith(b"\xff\xd8\xff")
    print(f"report upload, 2 photos of 320x240: {ms:.0f} ms")


def test_a_second_report_nearby_joins_the_open_alert(
    client: tuple[TestClient, redis.Redis],
) -> None:
    c, _ = client
    first = _report(c).json()
    again = _report(c, role="grid2", latitude="20.03965").json()  # ~3 m away
    assert again["created"] is False and again["alert_id"] == first["alert_id"]
    far = _report(c, latitude="20.05").json()  # ~1.2 km away
    other_kind = _report(c, kind="road_damage").json()
    assert far["created"] and far["alert_id"] != first["alert_id"]
    assert other_kind["created"] and other_kind["alert_id"] != first["alert_id"]
    a = c.get(f"/api/alerts/{first['alert_id']}", headers=_h("admin")).json()
    assert len(a["evidence"]) == 2
    evs = c.get(f"/api/alerts/{first['alert_id']}/events", headers=_h("admin")).json()
    assert [(e["actor"], e["action"]) for e in evs] == [
        ("grid-user", "report"),
        ("grid2-user", "report"),
    ]


def test_reporters_see_their_own_reports_and_states(
    client: tuple[TestClient, redis.Redis],
) -> None:
    c, r = client
    aid = _report(c).json()["alert_id"]
    _report(c, role="grid2", kind="road_damage", latitude="20.06")
    AlertStore(r, CFG).transition(aid, AlertState.ACKNOWLEDGED, actor="enforcement-user")
    mine = c.get("/api/reports?mine=1", headers=_h("grid")).json()
    assert [(m["alert_id"], m["state"], m["raised_by_me"]) for m in mine] == [
        (aid, "acknowledged", True)
    ]
    theirs = c.get("/api/reports", headers=_h("grid2")).json()
    assert [m["kind"] for m in theirs] == ["road_damage"]
    assert c.get("/api/reports?mine=0", headers=_h("grid")).status_code == 400
    cfg = c.get("/api/reports/config", headers=_h("grid")).json()
    assert cfg["kinds"] == ["vending", "fire", "smoke", "road_damage", "other"]


def test_feedback_photo_is_an_event_with_evidence(client: tuple[TestClient, redis.Redis]) -> None:
    c, _ = client
    aid = _report(c).json()["alert_id"]
    res = c.post(
        f"/api/alerts/{aid}/feedback", headers=_h("enforcement"), data={"note": "stall removed"},
        files=[("photos", ("after.png", _png(), "image/png"))],
    )  # fmt: skip
    assert res.status_code == 201, res.text
    (pid,) = res.json()["photos"]
    last = c.get(f"/api/alerts/{aid}/events", headers=_h("enforcement")).json()[-1]
    assert (last["action"], last["actor"], last["note"], last["evidence"]) == (
        "feedback",
        "enforcement-user",
        "stall removed",
        [pid],
    )
    assert last["from_state"] == last["to_state"] == "raised"
    item = c.get(f"/api/alerts/{aid}/evidence/{pid}", headers=_h("enforcement"))
    assert item.status_code == 200


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(out, format="PNG")
    return out.getvalue()


BIG = b"\xff\xd8\xff" + b"\x00" * 300_001
V = {**HERE, "kind": "vending"}


def _one(name: str, data: bytes, ctype: str) -> list[Any]:
    return [("photos", (name, data, ctype))]


@pytest.mark.parametrize(
    ("fields", "files", "status", "needle"),
    [
        (V, [("note", (None, b"hello"))], 422, "at least one photo"),
        (V, [("note", ("n.txt", b"x", "text/plain"))], 422, "got a file"),
        ({**V, "x": "1"}, _one("a.jpg", _jpeg(), "image/jpeg"), 422, "unknown field"),
        (V, _one("a.jpg", b"\xff\xd8\xffjunk" * 40, "image/jpeg"), 422, "corrupt"),
        (V, _one("a.jpg", BIG, "image/jpeg"), 413, "over the limit"),
        (V, _one("a.svg", b"<svg onload=alert(1)>", "image/svg+xml"), 415, "not a JPEG"),
        ({"latitude": "91", "longitude": "110", "kind": "vending"}, None, 422, "latitude"),
        ({"latitude": "nan", "longitude": "110", "kind": "vending"}, None, 422, "latitude"),
        ({"latitude": "20", "longitude": "inf", "kind": "vending"}, None, 422, "longitude"),
        ({"latitude": "abc", "longitude": "110", "kind": "vending"}, None, 422, "not a number"),
        ({"longitude": "110", "kind": "vending"}, None, 422, "latitude: required"),
        ({**HERE, "kind": "dragons"}, None, 422, "not reportable"),
        ({**HERE, "kind": "camera_offline"}, None, 422, "not reportable"),
        ({**V, "note": "n" * 2001}, None, 422, "note: at most"),
        (V, _one("a.jpg", _jpeg(), "image/jpeg") * 4, 400, "files"),
    ],
    ids=[
        "no-photo", "note-as-file", "unknown-field", "corrupt", "huge-photo", "svg", "lat-91",
        "lat-nan", "lon-inf", "lat-text", "lat-missing", "unknown-kind", "system-kind",
        "long-note", "too-many-photos",
    ],
)  # fmt: skip
def test_bad_reports_are_refused_and_store_nothing(
    client: tuple[TestClient, redis.Redis],
    fields: dict[str, str],
    files: list[Any] | None,
    status: int,
    needle: str,
) -> None:
    c, r = client
    before = _stored(r)
    files = files if files is not None else [("photos", ("a.jpg", _jpeg(), "image/jpeg"))]
    res = c.post("/api/reports", headers=_h("grid"), data=fields, files=files)
    assert res.status_code == status, res.text
    assert needle in str(res.json()["detail"])
    assert _stored(r) == before


def test_non_multipart_and_oversized_bodies(client: tuple[TestClient, redis.Redis]) -> None:
    c, r = client
    before = _stored(r)
    res = c.post("/api/reports", headers=_h("grid"), json={**HERE, "kind": "vending"})
    assert res.status_code == 415 and "multipart/form-data" in res.json()["detail"]
    # Over every photo at its limit plus the form: refused before it is read.
    limit = max(CFG.services.http.max_body_bytes, 3 * 300_000 + 65536)
    res = c.post(
        "/api/reports", headers={**_h("grid"), "Content-Type": "multipart/form-data; boundary=x"},
        content=b"x" * (limit + 1),
    )  # fmt: skip
    assert res.status_code == 413
    assert _stored(r) == before


@pytest.mark.parametrize(
    ("camera", "watches"),
    [
        ({}, True),
        ({"detectors": ["plate"]}, False),  # does not run the vending detector
        ({"zones": [{"id": "z", "type": "restricted", "polygon": [[0, 0], [1, 0], [1, 1]]}]},
         False),  # no no_vending zone: the rule can never fire there
        ({"zones": [{"id": "z", "type": "no_vending", "polygon": [[0, 0], [1, 0], [1, 1]]}]},
         True),
    ],
)  # fmt: skip
def test_a_reports_camera_must_be_able_to_see_the_rule(
    camera: dict[str, Any], watches: bool
) -> None:
    from citysight.config import CameraConfig, RuleConfig
    from serve_app.store.reports import can_watch

    rule = RuleConfig.model_validate(
        {"id": "v", "type": "dwell", "kind": "vending", "zone_types": ["no_vending"]}
    )
    cam = CameraConfig.model_validate(
        {"id": "c", "url": "rtsp://10.0.0.9/x", "latitude": 0, "longitude": 0, **camera}
    )
    if not camera:
        rule = rule.model_copy(update={"zone_types": []})
    assert can_watch(rule, cam) is watches
