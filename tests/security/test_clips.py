"""Evidence clips through the API (issue 15): range requests, states, and the same privacy
rules as the snapshots, as a negative matrix.

Real Redis, the production FastAPI app in process, a real H.264 MP4 with a real face
(scikit-image's astronaut) moving across a real street frame, the real YuNet detector: the
face-blurred copy is checked frame by frame with that detector, the original never leaves
without the scope, a reason and an audit record, and a missing detector serves nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest
import redis
from fastapi.testclient import TestClient
from testkit import need_shared

from benchmarks.fanout.world import ROLES, seed_principals, token_of
from citysight import keys
from citysight.clips import ClipRecord, ClipState, LocalClipStore, original_name, write_record
from citysight.config import CitysightConfig, InferenceService
from citysight.contracts import Alert, AlertKind, Location, Severity
from citysight.redaction import FaceRedactor
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore

Img = npt.NDArray[np.uint8]
ASTRONAUT_FACE = (178, 63, 268, 176)
DEPTS = ("fire", "enforcement", "police")
FPS = 10
FRAMES = 20
W, H = 640, 360


def _h(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(role)}"}


def _get(c: TestClient, url: str, headers: dict[str, str], timeout_s: float = 120) -> Any:
    """GET, waiting out ``202 redacting`` (the blurred copy is made on the first view)."""
    deadline = time.monotonic() + timeout_s
    while True:
        res = c.get(url, headers=headers)
        if res.status_code != 202 or res.json()["clip"]["state"] != "redacting":
            return res
        assert time.monotonic() < deadline, "the blurred copy was never made"
        time.sleep(0.2)


def _sees(role: str, dept: str) -> bool:
    d = ROLES[role]["department"]
    return d == "*" or d == dept


def _has(role: str, scope: str) -> bool:
    return scope in ROLES[role]["scopes"]


@pytest.fixture(scope="module")
def models() -> Path:
    d = need_shared("models")
    if not (d / "yunet_s_640_640.onnx").is_file():
        pytest.skip("YuNet model missing")
    return d


def _face() -> Img:
    from skimage import data

    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    return np.ascontiguousarray(img[y1 - 20 : y2 + 20, x1 - 20 : x2 + 20])


def _street() -> Img:
    cap = cv2.VideoCapture(str(need_shared("data/videos/street-720p.mp4")))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return cv2.resize(frame, (W, H))


def face_positions() -> list[tuple[int, int]]:
    """Where the face is pasted on each frame (it walks to the right)."""
    return [(60 + 12 * i, 80 + (i % 3) * 4) for i in range(FRAMES)]


def write_face_clip(path: Path) -> Path:
    """A 2 s H.264 MP4 (10 fps, GOP 10) of a street with a real face moving across it."""
    face, street = _face(), _street()
    fh, fw = face.shape[:2]
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        st = out.add_stream("libx264", rate=FPS)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        st.options = {"g": "10", "bframes": "0", "crf": "18", "preset": "veryfast"}
        for i, (x, y) in enumerate(face_positions()):
            img = street.copy()
            img[y : y + fh, x : x + fw] = face
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts, vf.time_base = i, Fraction(1, FPS)
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    return path


def _frames(data: bytes, tmp: Path) -> list[Img]:
    p = tmp / f"read-{hashlib.sha256(data).hexdigest()[:8]}.mp4"
    p.write_bytes(data)
    with av.open(str(p)) as c:
        return [np.asarray(f.to_ndarray(format="bgr24"), np.uint8) for f in c.decode(video=0)]


def _detail(img: Img) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def _alert(aid: str, dept: str) -> Alert:
    kind = {"fire": AlertKind.FIRE, "enforcement": AlertKind.VENDING, "police": AlertKind.PLATE}
    return Alert(
        id=aid, kind=kind[dept], severity=Severity.HIGH, camera_id=f"cam-{dept}",
        location=Location(lat=1.0, lon=2.0), department=dept,
        started_at=datetime.now(UTC), detected_at=time.time(),
    )  # fmt: skip


def _cfg(
    store: Path, models: Path | str, tiers: dict[str, list[str]] | None = None
) -> CitysightConfig:
    return CitysightConfig.model_validate(
        {
            "site": {"timezone": "Asia/Shanghai"},
            "departments": [{"id": d} for d in DEPTS],
            "services": {
                "inference": {"models_dir": str(models), "tiers": tiers or {}},
                "streams": {"clips": {"storage": {"path": str(store)}}},
            },
        }
    )


def _ready(r: redis.Redis, store: Path, aid: str, camera: str, src: Path) -> ClipRecord:
    LocalClipStore(store).put_file(original_name(aid), src)
    data = src.read_bytes()
    rec = ClipRecord(
        alert_id=aid, camera_id=camera, state=ClipState.READY, event_at=time.time(),
        object=original_name(aid), sha256=hashlib.sha256(data).hexdigest(), size=len(data),
        frames=FRAMES, duration_s=FRAMES / FPS, start_at=time.time() - 10,
        expires_at=time.time() + 3600,
    )  # fmt: skip
    write_record(r, rec)
    return rec


@pytest.fixture(scope="module")
def world(
    redis_server: Any, models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One ready clip per department, a pending one, an unavailable one."""
    tmp = tmp_path_factory.mktemp("clip-api")
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    seed_principals(r, ROLES)
    store = tmp / "clips"
    cfg = _cfg(store, models)
    src = write_face_clip(tmp / "face.mp4")
    alerts = [_alert(f"al_{d}_clip", d) for d in DEPTS]
    alerts += [_alert("al_pending", "fire"), _alert("al_gone", "fire"), _alert("al_none", "fire")]
    AlertStore(r, cfg).save_new(alerts)
    recs = {d: _ready(r, store, f"al_{d}_clip", f"cam-{d}", src) for d in DEPTS}
    AlertStore(r, cfg).save_new([_alert("al_closed", "fire")])
    _ready(r, store, "al_closed", "cam-fire", src)
    now = time.time()
    write_record(r, ClipRecord(alert_id="al_pending", camera_id="cam-fire", event_at=now,
                               expires_at=now + 3600))  # fmt: skip
    write_record(r, ClipRecord(alert_id="al_gone", camera_id="cam-fire", event_at=now - 60,
                               state=ClipState.UNAVAILABLE, expires_at=now + 3600,
                               reason="no video of camera cam-fire buffered"))  # fmt: skip
    with TestClient(create_api(cfg, redis_server.url)) as client:
        yield {"client": client, "r": r, "src": src, "recs": recs, "tmp": tmp, "cfg": cfg}
    r.flushall()
    r.close()


# -- mechanics: states, ranges, ETag ----------------------------------------------------------


def test_states_are_clear_while_pending_and_when_unavailable(world: dict[str, Any]) -> None:
    c = world["client"]
    p = c.get("/api/alerts/al_pending/clip", headers=_h("fire"))
    assert p.status_code == 202 and p.json()["clip"]["state"] == "pending"
    assert p.headers["retry-after"] and p.headers["content-type"].startswith("application/json")
    g = c.get("/api/alerts/al_gone/clip", headers=_h("fire"))
    assert g.status_code == 404 and g.json()["clip"]["state"] == "unavailable"
    assert "no video" in g.json()["clip"]["reason"]  # the worker's reason, shown as is
    n = c.get("/api/alerts/al_none/clip", headers=_h("fire"))
    assert n.status_code == 404 and n.json()["clip"]["state"] == "none"
    # The alert itself carries its clip's state for the map.
    a = c.get("/api/alerts/al_fire_clip", headers=_h("fire")).json()
    assert a["clip"]["state"] == "ready" and a["clip"]["sha256"] == world["recs"]["fire"].sha256
    assert "object" not in a["clip"] and "writer" not in a["clip"]


def test_the_blurred_clip_has_no_face_left_on_any_frame(
    world: dict[str, Any], models: Path
) -> None:
    c, tmp = world["client"], world["tmp"]
    first = c.get("/api/alerts/al_fire_clip/clip", headers=_h("fire"))
    assert first.status_code == 202 and first.json()["clip"]["state"] == "redacting"
    assert b"ftyp" not in first.content  # nothing served before the copy exists
    res = _get(c, "/api/alerts/al_fire_clip/clip", _h("fire"))
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "video/mp4" and res.headers["x-redacted"] == "true"
    assert res.headers["accept-ranges"] == "bytes"
    assert res.content != world["src"].read_bytes()  # never the original
    served, orig = _frames(res.content, tmp), _frames(world["src"].read_bytes(), tmp)
    assert len(served) == len(orig) == FRAMES
    finder = FaceRedactor.from_config(InferenceService(models_dir=str(models)), score_threshold=0.5)
    fh, fw = _face().shape[:2]
    for i in range(0, FRAMES, 3):  # sampled frames
        assert len(finder.faces(orig[i])) >= 1, "the face is detectable in the original"
        # YuNet may still call a blurred blob a face: what must not exist is a face box
        # whose content is not blurred.
        for x1, y1, x2, y2 in finder.faces(served[i]).astype(int).tolist():
            box = (slice(max(0, y1), y2), slice(max(0, x1), x2))
            assert _detail(served[i][box]) < 0.2 * _detail(orig[i][box]), (
                f"frame {i}: face unblurred"
            )
        x, y = face_positions()[i]
        region = (slice(y + 20, y + fh - 20), slice(x + 20, x + fw - 20))
        assert _detail(served[i][region]) < 0.2 * _detail(orig[i][region])
    # The rest of the scene stays usable.
    assert _detail(served[0][250:, 400:]) > 0.3 * _detail(orig[0][250:, 400:])
    # Rendered once: a second view is the cached copy (same ETag, same bytes).
    again = c.get("/api/alerts/al_fire_clip/clip", headers=_h("fire"))
    assert again.headers["etag"] == res.headers["etag"] and again.content == res.content
    kept = Path(world["cfg"].services.streams.clips.storage.path) / "al_fire_clip"
    assert len(list(kept.glob("redacted-*.mp4"))) == 1


RANGES = [
    # (Range header, status, expected slice of the file or None)
    ("bytes=0-99", 206, slice(0, 100)),
    ("bytes=100-", 206, slice(100, None)),
    ("bytes=-50", 206, slice(-50, None)),
    ("bytes=10-10", 206, slice(10, 11)),
    ("bytes=0-999999999", 206, slice(0, None)),  # clipped to the file
    ("bytes=999999999-", 416, None),
    ("bytes=50-10", 416, None),
    ("bytes=-0", 416, None),
    ("bytes=abc", 416, None),
    ("bytes=-", 416, None),
    ("items=0-10", 200, slice(0, None)),  # another unit: the whole file
    ("bytes=0-1,5-9", 200, slice(0, None)),  # several ranges: the whole file
]


@pytest.mark.parametrize(("header", "status", "part"), RANGES)
def test_range_requests(
    world: dict[str, Any], header: str, status: int, part: slice | None
) -> None:
    c = world["client"]
    full = _get(c, "/api/alerts/al_fire_clip/clip", _h("fire")).content
    res = c.get("/api/alerts/al_fire_clip/clip", headers={**_h("fire"), "Range": header})
    assert res.status_code == status, (header, res.status_code, res.text[:100])
    if part is None:
        assert res.headers["content-range"] == f"bytes */{len(full)}"
        assert not res.content.startswith(b"\x00\x00")  # JSON error, no video bytes
        return
    assert res.content == full[part]
    if status == 206:
        start = part.start if part.start is None or part.start >= 0 else len(full) + part.start
        start = start or 0
        end = start + len(res.content) - 1
        assert res.headers["content-range"] == f"bytes {start}-{end}/{len(full)}"


def test_etag_and_the_original_sha256(world: dict[str, Any]) -> None:
    c, rec = world["client"], world["recs"]["police"]
    res = c.post("/api/alerts/al_police_clip/clip/unredacted", json={"reason": "warrant 7"},
                 headers=_h("police"))  # fmt: skip
    assert res.status_code == 200 and res.headers["x-redacted"] == "false"
    assert res.headers["etag"] == f'"{rec.sha256}"'
    assert hashlib.sha256(res.content).hexdigest() == rec.sha256
    part = c.post("/api/alerts/al_police_clip/clip/unredacted", json={"reason": "warrant 7"},
                  headers={**_h("police"), "Range": "bytes=0-9"})  # fmt: skip
    assert part.status_code == 206 and part.content == res.content[:10]
    red = _get(c, "/api/alerts/al_police_clip/clip", _h("police"))
    assert red.headers["etag"] != res.headers["etag"]
    nm = c.get("/api/alerts/al_police_clip/clip",
               headers={**_h("police"), "If-None-Match": red.headers["etag"]})  # fmt: skip
    assert nm.status_code == 304 and nm.content == b""


# -- the negative matrix ----------------------------------------------------------------------


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("dept", DEPTS)
def test_clip_access_matrix(world: dict[str, Any], role: str, dept: str) -> None:
    """BOLA and BOPLA on the clip routes: foreign alerts answer like missing ones (404, no
    bytes); the original needs evidence:unredacted and a reason, and is audited."""
    c, r = world["client"], world["r"]
    aid = f"al_{dept}_clip"
    red = _get(c, f"/api/alerts/{aid}/clip", _h(role))
    missing = c.get("/api/alerts/al_nope_000/clip", headers=_h(role))
    body = {"reason": "case 42"}
    orig = c.post(f"/api/alerts/{aid}/clip/unredacted", json=body, headers=_h(role))
    audit_before = r.xlen(keys.AUDIT_STREAM)
    if not _has(role, "alerts:read"):
        assert red.status_code == missing.status_code == orig.status_code == 403
    elif not _sees(role, dept):
        assert red.status_code == missing.status_code == orig.status_code == 404
        assert red.json() == missing.json()  # indistinguishable from a missing alert
    elif not _has(role, "evidence:unredacted"):
        assert red.status_code == 200 and red.headers["x-redacted"] == "true"
        assert orig.status_code == 403
    else:
        assert red.status_code == 200 and red.headers["x-redacted"] == "true"
        assert orig.status_code == 200 and orig.headers["x-redacted"] == "false"
        no_reason = c.post(f"/api/alerts/{aid}/clip/unredacted", json={}, headers=_h(role))
        blank = c.post(
            f"/api/alerts/{aid}/clip/unredacted", json={"reason": "  "}, headers=_h(role)
        )
        assert no_reason.status_code == blank.status_code == 422
        assert r.xlen(keys.AUDIT_STREAM) == audit_before  # refused: nothing audited, no bytes
        records = c.get("/api/audit", headers=_h("admin")).json()["records"]
        assert any(x["action"] == "clip.unredacted" and x["target"] == aid
                   and x["reason"] == "case 42" for x in records)  # fmt: skip
    for res in (red, orig):
        if res.status_code != 200:
            assert res.headers["content-type"].startswith("application/json")
            assert b"ftyp" not in res.content  # no MP4 bytes


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/alerts/al_fire_clip/clip"),
        ("POST", "/api/alerts/al_fire_clip/clip/unredacted"),
    ],
)
@pytest.mark.parametrize("token", [None, "tok-bogus-0000000000"])
def test_clip_routes_refuse_without_a_valid_token(
    world: dict[str, Any], method: str, path: str, token: str | None
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    res = world["client"].request(method, path, headers=headers, json={"reason": "x y z"})
    assert res.status_code == 401 and b"ftyp" not in res.content


# -- fail closed --------------------------------------------------------------------------


def test_no_face_detector_means_no_redacted_clip(
    world: dict[str, Any], redis_server: Any, tmp_path: Path
) -> None:
    """Without a face detector the blurred copy cannot be made: 503 and no bytes, while the
    audited original still works for those allowed to see it."""
    cfg = _cfg(world["cfg"].services.streams.clips.storage.path, tmp_path, {"face": ["yunet"]})
    with TestClient(create_api(cfg, redis_server.url)) as client:
        res = client.get("/api/alerts/al_closed/clip", headers=_h("fire"))
        assert res.status_code == 503 and "redaction unavailable" in res.json()["detail"]
        assert b"ftyp" not in res.content
        ok = client.post("/api/alerts/al_closed/clip/unredacted",
                         json={"reason": "case 9"}, headers=_h("admin"))  # fmt: skip
        assert ok.status_code == 200 and ok.headers["x-redacted"] == "false"
    store = Path(world["cfg"].services.streams.clips.storage.path) / "al_closed"
    assert not list(store.glob("redacted-*.mp4"))  # nothing rendered, nothing cached
