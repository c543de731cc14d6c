"""Negative matrix of the field-report routes (issue 16): tokens, scopes, departments,
hostile multipart bodies, and face redaction of report photos.

Real Redis, the production FastAPI app in process. A reporter (``reports:write`` only)
reaches the report routes and nothing else; alert tokens without ``reports:write`` cannot
report; feedback needs ``alerts:dispatch`` on an alert of the caller's department (a
foreign alert answers like a missing one); photo items are redacted like snapshots
(unredacted only with the scope, a reason, and an audit record); malformed or hostile
multipart bodies get a 4xx and store nothing.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image
from testkit import need_shared

from benchmarks.fanout.world import ROLES, seed_principals, token_of
from citysight.config import CitysightConfig
from serve_app.http import create_api

GRID = {"grid": {"department": "enforcement", "scopes": ["reports:write"]}}
ALL = {**ROLES, **GRID}
CFG = CitysightConfig.model_validate({
    "departments": [{"id": d} for d in ("fire", "enforcement", "police")],
    "routing": [{"kind": "vending", "department": "enforcement"},
                {"kind": "fire", "department": "fire"}],
    "reports": {"max_photos": 2, "max_photo_bytes": 200_000},
})  # fmt: skip


def _jpeg(seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="JPEG")
    return out.getvalue()


def _h(role: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(role)}"} if role else {}


def _files() -> list[Any]:
    return [("photos", ("a.jpg", _jpeg(), "image/jpeg"))]


@pytest.fixture(scope="module")
def world(redis_server: Any) -> Iterator[tuple[TestClient, redis.Redis, dict[str, str]]]:
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    seed_principals(r, ALL)
    with TestClient(create_api(CFG, redis_server.url)) as c:
        ids = {}
        for kind, lat in (("vending", "20.0"), ("fire", "21.0")):
            res = c.post(
                "/api/reports", headers=_h("grid"), files=_files(),
                data={"latitude": lat, "longitude": "110", "kind": kind},
            )  # fmt: skip
            assert res.status_code == 201, res.text
            ids[kind] = res.json()["alert_id"]
            ids[kind + "-photo"] = res.json()["photos"][0]
        yield c, r, ids
    r.close()


def _has(role: str, scope: str) -> bool:
    return scope in ALL[role]["scopes"]


def _sees(role: str, dept: str) -> bool:
    return ALL[role]["department"] in ("*", dept)


@pytest.mark.parametrize("role", [None, *ALL])
def test_report_routes_need_reports_write(world: Any, role: str | None) -> None:
    c, _, _ = world
    post = c.post(
        "/api/reports", headers=_h(role), files=_files(),
        data={"latitude": "20.5", "longitude": "110", "kind": "vending"},
    )  # fmt: skip
    mine = c.get("/api/reports?mine=1", headers=_h(role))
    conf = c.get("/api/reports/config", headers=_h(role))
    if role is None:
        assert (post.status_code, mine.status_code, conf.status_code) == (401, 401, 401)
    elif _has(role, "reports:write"):
        assert (post.status_code, mine.status_code, conf.status_code) == (201, 200, 200)
    else:
        assert (post.status_code, mine.status_code, conf.status_code) == (403, 403, 403)
        assert "reports:write" in post.json()["detail"]


@pytest.mark.parametrize("role", [None, *ALL])
@pytest.mark.parametrize("kind", ["vending", "fire"])
def test_feedback_and_photo_items_are_scoped(world: Any, role: str | None, kind: str) -> None:
    c, _, ids = world
    aid, pid = ids[kind], ids[kind + "-photo"]
    dept = "enforcement" if kind == "vending" else "fire"
    fb = c.post(f"/api/alerts/{aid}/feedback", headers=_h(role), files=_files())
    item = c.get(f"/api/alerts/{aid}/evidence/{pid}", headers=_h(role))
    events = c.get(f"/api/alerts/{aid}/events", headers=_h(role))
    if role is None:
        assert (fb.status_code, item.status_code) == (401, 401)
        return
    reads = _has(role, "alerts:read")
    if not reads:  # the reporter too: a report's alert is not theirs to read or act on
        assert (fb.status_code, item.status_code, events.status_code) == (403, 403, 403)
        return
    if not _sees(role, dept):  # BOLA: a foreign alert answers exactly like a missing one
        assert item.status_code == 404
        assert fb.status_code == (404 if _has(role, "alerts:dispatch") else 403)
        missing = c.get(f"/api/alerts/al_missing_000/evidence/{pid}", headers=_h(role))
        assert item.json() == missing.json()
        return
    assert item.status_code == 200 and item.headers["x-redacted"] == "true"
    assert fb.status_code == (201 if _has(role, "alerts:dispatch") else 403)


@pytest.mark.parametrize("role", [*ALL])
def test_unredacted_photo_item_needs_the_scope_a_reason_and_is_audited(
    world: Any, role: str
) -> None:
    c, r, ids = world
    aid, pid = ids["vending"], ids["vending-photo"]
    url = f"/api/alerts/{aid}/evidence/{pid}/unredacted"
    before = r.xlen("citysight:audit")
    res = c.post(url, headers=_h(role), json={"reason": "court order 17"})
    if not _has(role, "alerts:read"):
        assert res.status_code == 403
    elif not _sees(role, "enforcement"):
        assert res.status_code == 404
    elif not _has(role, "evidence:unredacted"):
        assert res.status_code == 403 and "evidence:unredacted" in res.json()["detail"]
    else:
        assert res.status_code == 200 and res.headers["x-redacted"] == "false"
        assert r.xlen("citysight:audit") == before + 1
        assert c.post(url, headers=_h(role), json={"reason": ""}).status_code == 422
        return
    assert r.xlen("citysight:audit") == before


def _count(r: redis.Redis) -> int:
    return sum(1 for _ in r.scan_iter("citysight:evidence:*")) + sum(
        1 for _ in r.scan_iter("citysight:alert:*")
    )


HOSTILE: list[tuple[str, dict[str, str], bytes, tuple[int, ...]]] = [
    ("no boundary", {"Content-Type": "multipart/form-data"}, b"--x\r\n\r\n", (400,)),
    ("wrong boundary", {"Content-Type": "multipart/form-data; boundary=zz"},
     b"--x\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nfire\r\n--x--\r\n", (400, 422)),
    ("truncated part", {"Content-Type": "multipart/form-data; boundary=x"},
     b"--x\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"a.jpg\"\r\n"
     b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0", (400, 422)),
    ("huge text field", {"Content-Type": "multipart/form-data; boundary=x"},
     b"--x\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n" + b"n" * 70_000
     + b"\r\n--x--\r\n", (400,)),
    ("many fields", {"Content-Type": "multipart/form-data; boundary=x"},
     b"".join(b"--x\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nv\r\n" % i
              for i in range(50)) + b"--x--\r\n", (400,)),
    ("text/plain", {"Content-Type": "text/plain"}, b"photos=1", (415,)),
]  # fmt: skip


@pytest.mark.parametrize(("why", "headers", "body", "codes"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_multipart_is_refused_and_stores_nothing(
    world: Any, why: str, headers: dict[str, str], body: bytes, codes: tuple[int, ...]
) -> None:
    c, r, ids = world
    before = _count(r)
    for url, role in (
        ("/api/reports", "grid"),
        (f"/api/alerts/{ids['vending']}/feedback", "admin"),
    ):
        res = c.post(url, headers={**_h(role), **headers}, content=body)
        assert res.status_code in codes, (why, url, res.status_code, res.text)
        assert "detail" in res.json()
    assert _count(r) == before


def test_a_hostile_file_name_never_reaches_a_key(world: Any) -> None:
    c, r, _ = world
    res = c.post(
        "/api/reports", headers=_h("grid"),
        data={"latitude": "20.9", "longitude": "110", "kind": "vending"},
        files=[("photos", ("../../../etc/passwd\r\nX: y", _jpeg(3), "image/jpeg"))],
    )  # fmt: skip
    assert res.status_code == 201
    aid = res.json()["alert_id"]
    keys = sorted(k.decode() for k in r.scan_iter(f"citysight:evidence:{aid}*"))
    assert keys == [f"citysight:evidence:{aid}:{res.json()['photos'][0]}"]
    assert all("passwd" not in k and ".." not in k for k in keys)


def test_report_photos_are_face_blurred_when_served(redis_url: str) -> None:
    """A passer-by's face in a report photo is blurred in every redacted view (YuNet)."""
    from skimage import data

    models = need_shared("models")
    if not (models / "yunet_s_640_640.onnx").is_file():
        pytest.skip("YuNet model missing")
    cfg = CFG.model_copy(deep=True)
    cfg.services.inference.models_dir = str(models)
    r = redis.Redis.from_url(redis_url)
    seed_principals(r, ALL)
    img = np.full((360, 480, 3), 120, np.uint8)
    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[43:196, 158:288]
    img[100:253, 200:330] = face
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    region = (slice(130, 223), slice(230, 300))

    def detail(x: Any) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())

    with TestClient(create_api(cfg, redis_url)) as c:
        res = c.post(
            "/api/reports", headers=_h("grid"), files=[("photos", ("f.jpg", jpeg, "image/jpeg"))],
            data={"latitude": "20.0", "longitude": "110", "kind": "vending"},
        )  # fmt: skip
        aid, pid = res.json()["alert_id"], res.json()["photos"][0]
        served = c.get(f"/api/alerts/{aid}/evidence/{pid}", headers=_h("enforcement"))
        assert served.status_code == 200 and served.headers["x-redacted"] == "true"
        out = cv2.imdecode(np.frombuffer(served.content, np.uint8), cv2.IMREAD_COLOR)
        assert out.shape == img.shape
        assert detail(out[region]) < 0.15 * detail(img[region])
    r.close()


def test_report_page_is_served_with_the_map_csp(world: Any) -> None:
    c, _, _ = world
    res = c.get("/report")
    assert res.status_code == 200 and 'capture="environment"' in res.text
    assert "script-src 'self'" in res.headers["content-security-policy"]
    assert "unsafe-inline" not in res.headers["content-security-policy"].split("style-src-attr")[0]
