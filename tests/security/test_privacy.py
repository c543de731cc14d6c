"""Issue 13, privacy findings (3 redacted evidence, 7 plate data, 11 exposure), negative tests.

Each case is an attack or a leak the old code allowed; every row fails on the code before
the fix and passes now. Real Redis, the production FastAPI app in process (Starlette's
TestClient), the real YuNet face detector on real faces (scikit-image's astronaut and the
face eval set), real Chromium for the map page.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import redis
from fastapi.testclient import TestClient
from testkit import need_shared

from benchmarks.fanout.world import ROLES, seed_principals, token_of
from citysight.config import CameraConfig, CitysightConfig, InferenceService
from citysight.contracts import Alert, AlertKind, EvidenceRef, Location, ObjectClass, Severity
from citysight.redaction import FaceRedactor, RedactionUnavailable
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore
from serve_app.store.evidence import EvidenceStore

Img = npt.NDArray[np.uint8]
ASTRONAUT_FACE = (178, 63, 268, 176)  # x1, y1, x2, y2 of the face in skimage's astronaut


def _h(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(role)}"}


def _cfg(models: Path | str, tiers: dict[str, list[str]] | None = None) -> CitysightConfig:
    return CitysightConfig.model_validate(
        {
            "departments": [{"id": d} for d in ("fire", "enforcement", "police")],
            "services": {"inference": {"models_dir": str(models), "tiers": tiers or {}}},
        }
    )


# -- finding 3: every face blurred on every redacted image, fail closed ---------------------


def _astronaut_face() -> Img:
    from skimage import data

    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    return np.ascontiguousarray(img[y1 - 20 : y2 + 20, x1 - 20 : x2 + 20])


def _eval_face() -> Img:
    """A second real face: the first image of the face eval set, cropped around its box."""
    root = need_shared("data/eval/faces")
    first = json.loads((root / "labels.json").read_text())["images"][0]
    img = cv2.imread(str(root / first["file"]))
    x1, y1, x2, y2 = (int(v) for v in first["objects"][0]["box"])
    return np.ascontiguousarray(img[max(0, y1 - 20) : y2 + 20, max(0, x1 - 20) : x2 + 20])


def _background(kind: str) -> Img:
    """A real frame of a non-face alert kind (plate, fire, vending street scene)."""
    if kind == "plate":
        files = sorted(need_shared("data/eval/plates/images").iterdir())
        return cv2.resize(cv2.imread(str(files[0])), (960, 720))
    if kind == "fire":
        return cv2.resize(
            cv2.imread(str(need_shared("data/eval/fire/images").glob("*.jpg").__next__())),
            (960, 720),
        )
    cap = cv2.VideoCapture(str(need_shared("data/videos/street-720p.mp4")))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return cv2.resize(frame, (960, 720))


def _detail(img: Img) -> float:
    """High-frequency energy (variance of the Laplacian of the grey image)."""
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def _alert(aid: str, kind: AlertKind, dept: str, boxes: list[list[float]], cls: list[int]) -> Alert:
    return Alert(
        id=aid,
        kind=kind,
        severity=Severity.HIGH,
        camera_id="cam-1",
        location=Location(lat=1.0, lon=2.0),
        department=dept,
        started_at=datetime.now(UTC),
        plate_text="粤B12345" if kind is AlertKind.PLATE else None,
        subject="粤B12345" if kind is AlertKind.PLATE else "*",
        summary="hotlist plate 粤B12345 read as 粤B12345" if kind is AlertKind.PLATE else "x",
        evidence=[EvidenceRef(key=f"citysight:evidence:{aid}", boxes=boxes, class_ids=cls)],
    )


# Which alert, which face at which place. None of these alerts records a face box: before
# the fix their snapshots were served "redacted" with the passer-by's face intact.
FACE_CASES = [
    # (alert kind, department, face source, paste x, paste y, recorded box, recorded class)
    ("plate", "police", "astronaut", 60, 80, [500, 500, 700, 560], ObjectClass.PLATE),
    ("fire", "fire", "astronaut", 700, 300, [100, 100, 400, 400], ObjectClass.FIRE),
    ("vending", "enforcement", "astronaut", 400, 60, [50, 400, 300, 700], ObjectClass.PERSON),
    ("plate", "police", "eval", 620, 120, [100, 500, 300, 560], ObjectClass.PLATE),
]


@pytest.fixture(scope="module")
def models_dir_real() -> Path:
    d = need_shared("models")
    if not (d / "yunet_s_640_640.onnx").is_file():
        pytest.skip("YuNet model missing")
    return d


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    seed_principals(c, ROLES)
    yield c
    c.close()


def _seed(r: redis.Redis, cfg: CitysightConfig, alert: Alert, img: Img) -> None:
    AlertStore(r, cfg).save_new([alert])
    EvidenceStore(r, cfg).put(
        alert.id, cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    )


@pytest.mark.parametrize(("kind", "dept", "face", "x", "y", "box", "cls"), FACE_CASES)
def test_redacted_evidence_of_a_non_face_alert_blurs_a_passer_by(
    r: redis.Redis, redis_url: str, models_dir_real: Path,
    kind: str, dept: str, face: str, x: int, y: int, box: list[float], cls: ObjectClass,
) -> None:  # fmt: skip
    cfg = _cfg(models_dir_real)
    face_img = _astronaut_face() if face == "astronaut" else _eval_face()
    img = _background(kind)
    fh, fw = face_img.shape[:2]
    img[y : y + fh, x : x + fw] = face_img
    region = (slice(y + 20, y + fh - 20), slice(x + 20, x + fw - 20))
    alert = _alert(f"al_face_{kind}_{face}", AlertKind(kind), dept, [box], [int(cls)])
    _seed(r, cfg, alert, img)
    before = _detail(img[region])
    assert before > 50, "the pasted face carries detail"
    with TestClient(create_api(cfg, redis_url)) as client:
        res = client.get(f"/api/alerts/{alert.id}/evidence", headers=_h(dept))
        assert res.status_code == 200 and res.headers["x-redacted"] == "true"
        served = cv2.imdecode(np.frombuffer(res.content, np.uint8), cv2.IMREAD_COLOR)
        # The face's detail is gone (the old code served it with ~all detail kept) ...
        assert _detail(served[region]) < 0.15 * before, (_detail(served[region]), before)
        # ... while the rest of the scene is still a usable image.
        rest = served.copy()
        rest[y : y + fh, x : x + fw] = 0
        orig = img.copy()
        orig[y : y + fh, x : x + fw] = 0
        assert _detail(rest) > 0.3 * _detail(orig)
        health = client.get("/health", headers=_h("admin")).json()
        assert health["components"]["redaction"]["state"] == "running"
        assert health["components"]["redaction"]["detail"]["tier"] == "yunet"


FAIL_CLOSED = [
    # (why, tiers, models dir content)
    ("model file missing", ["yunet"], None),
    ("model file corrupt", ["yunet_n"], b"not an onnx model"),
]


@pytest.mark.parametrize(("why", "tiers", "content"), FAIL_CLOSED)
def test_redaction_fails_closed_without_a_face_detector(
    r: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    why: str,
    tiers: list[str],
    content: bytes | None,
) -> None:
    if content is not None:
        (tmp_path / "yunet_n_640_640.onnx").write_bytes(content)
    cfg = _cfg(tmp_path, {"face": tiers})
    img = np.full((240, 320, 3), 90, np.uint8)
    img[40:193, 40:160] = _astronaut_face()[:153, :120]
    alert = _alert("al_closed", AlertKind.FIRE, "fire", [], [])
    _seed(r, cfg, alert, img)
    with TestClient(create_api(cfg, redis_url)) as client:
        res = client.get(f"/api/alerts/{alert.id}/evidence", headers=_h("fire"))
        assert res.status_code == 503, (why, res.status_code)  # the old code: 200, face intact
        assert "redaction unavailable" in res.json()["detail"]
        assert res.headers["content-type"].startswith("application/json")
        comp = client.get("/health", headers=_h("admin")).json()["components"]["redaction"]
        assert comp["state"] == "failed" and tiers[0] in comp["detail"]["reason"]


def test_a_detector_failing_on_a_frame_serves_nothing(redis_url: str, r: redis.Redis) -> None:
    """A detector that raises (a test double: a real one cannot be made to) serves nothing."""

    def broken_detector(frame: Img) -> Any:
        raise RuntimeError("device lost")

    cfg = _cfg("/nonexistent")
    red = FaceRedactor(broken_detector, "yunet")
    img = np.full((120, 160, 3), 90, np.uint8)
    with pytest.raises(RedactionUnavailable):
        red.redact(img)
    assert red.status()["state"] == "degraded" and red.failures == 1
    alert = _alert("al_broken", AlertKind.VENDING, "enforcement", [], [])
    _seed(r, cfg, alert, img)
    ev = EvidenceStore(r, cfg, redactor=red)
    with pytest.raises(RedactionUnavailable):
        ev.get(alert, unredacted=False)
    assert ev.get(alert, unredacted=True) is not None  # the unredacted path needs no detector


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (np.zeros((10, 10), np.uint8), ValueError),  # grey: not BGR
        (np.zeros((10, 10, 4), np.uint8), ValueError),  # BGRA
        (np.zeros((10, 10, 3), np.float32), ValueError),  # not uint8
        (np.zeros((64, 64, 3), np.uint8), None),
    ],
)
def test_redact_api_takes_bgr_frames_only(frame: Any, error: type[Exception] | None) -> None:
    red = FaceRedactor.from_config(InferenceService(tiers={"face": ["haar"]}))
    if error is None:
        out = red.redact(frame)
        assert out.shape == frame.shape and out is not frame
    else:
        with pytest.raises(error):
            red.redact(frame)


def test_redact_api_blurs_found_and_known_faces(models_dir_real: Path) -> None:
    """The frame API (for clips and report photos): found faces and known boxes both blurred."""
    red = FaceRedactor.from_config(InferenceService(models_dir=str(models_dir_real)))
    from skimage import data

    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    yy, xx = np.mgrid[0:60, 0:60]
    img[400:460, 400:460] = (((yy // 3 + xx // 3) % 2) * 255).astype(np.uint8)[..., None]
    out = red.redact(img, known=[[400, 400, 460, 460]])
    assert _detail(out[y1:y2, x1:x2]) < 0.15 * _detail(img[y1:y2, x1:x2])
    assert _detail(out[405:455, 405:455]) < 0.05 * _detail(img[405:455, 405:455])
    assert np.array_equal(out[0:50, 0:50], img[0:50, 0:50])  # elsewhere untouched


def test_a_redacted_rendering_is_kept_per_image_boxes_and_tier(
    r: redis.Redis, models_dir_real: Path
) -> None:
    """The second view is the kept rendering; new boxes or a dead detector are never skipped."""
    cfg = _cfg(models_dir_real)
    img = np.full((240, 320, 3), 90, np.uint8)
    img[40:193, 40:160] = _astronaut_face()[:153, :120]
    yy, xx = np.mgrid[0:60, 0:60]
    img[10:70, 250:310] = (((yy // 3 + xx // 3) % 2) * 255).astype(np.uint8)[..., None]
    alert = _alert("al_kept", AlertKind.FIRE, "fire", [], [])
    _seed(r, cfg, alert, img)
    ev = EvidenceStore(r, cfg)
    first = ev.get(alert, unredacted=False)
    assert first is not None and ev.redactor.redacted == 1
    assert ev.get(alert, unredacted=False) == first and ev.redactor.redacted == 1  # kept
    kept = list(r.scan_iter(match="citysight:evidence-redacted:al_kept:*"))
    assert len(kept) == 1 and 0 < r.pttl(kept[0]) <= r.pttl("citysight:evidence:al_kept") + 1000
    boxed = alert.model_copy(
        update={"evidence": [EvidenceRef(key="k", boxes=[[250, 10, 310, 70]], class_ids=[0])]}
    )
    assert ev.get(boxed, unredacted=False) != first and ev.redactor.redacted == 2
    # A detector that is gone serves nothing, not even a kept rendering.
    dead = EvidenceStore(r, cfg, redactor=FaceRedactor(None, reason="no tier"))
    with pytest.raises(RedactionUnavailable):
        dead.get(alert, unredacted=False)


# -- finding 7: plate data only with plates:query; retention per read; reasoned queries ----

PLATE = "粤B12345"
PLATE_ROLES: dict[str, dict[str, Any]] = {
    "admin": ROLES["admin"],
    "police": ROLES["police"],  # holds plates:query
    "police_reader": {"department": "police", "scopes": ["alerts:read", "alerts:dispatch"]},
}


def _plate_free(text: str) -> bool:
    """No trace of the plate (JSON may escape the province character, never the rest)."""
    return "B12345" not in text


@pytest.fixture
def plate_client(redis_url: str) -> Iterator[tuple[TestClient, redis.Redis, CitysightConfig]]:
    r = redis.Redis.from_url(redis_url)
    seed_principals(r, PLATE_ROLES)
    cfg = _cfg("/nonexistent")
    AlertStore(r, cfg).save_new([_alert("al_plate_1", AlertKind.PLATE, "police", [], [])])
    with TestClient(create_api(cfg, redis_url, ws_heartbeat_s=0.2)) as c:
        yield c, r, cfg
    r.close()


PLATE_ROUTES = [
    # (route, role, plate visible)
    ("GET /api/alerts", "police", True),
    ("GET /api/alerts", "police_reader", False),
    ("GET /api/alerts/al_plate_1", "police_reader", False),
    ("GET /api/alerts/al_plate_1", "admin", True),
    ("GET /api/alerts/al_plate_1/events", "police_reader", False),
    ("GET /api/alerts/al_plate_1/events", "police", True),
    ("POST /api/alerts/al_plate_1/transitions", "police_reader", False),
]


@pytest.mark.parametrize(("route", "role", "visible"), PLATE_ROUTES)
def test_rest_alerts_carry_plates_only_for_plates_query(
    plate_client: tuple[TestClient, redis.Redis, CitysightConfig],
    route: str,
    role: str,
    visible: bool,
) -> None:
    client = plate_client[0]
    method, path = route.split(" ")
    body = {"to": "acknowledged"} if method == "POST" else None
    res = client.request(method, path, json=body, headers=_h(role))
    assert res.status_code == 200, res.text
    assert _plate_free(res.text) is not visible, res.text  # the old code: plate everywhere
    if not visible and path.endswith("al_plate_1"):
        a = res.json()
        assert a["plate_text"] is None and a["kind"] == "plate" and a["camera_id"] == "cam-1"


@pytest.mark.parametrize(("role", "visible"), [("police_reader", False), ("police", True)])
def test_websocket_feed_carries_plates_only_for_plates_query(
    plate_client: tuple[TestClient, redis.Redis, CitysightConfig], role: str, visible: bool
) -> None:
    """Replayed and live alerts, and alert events, on the same socket."""
    client, r, cfg = plate_client
    with client.websocket_connect("/ws?last_id=0-0", headers=_h(role)) as ws:
        got: list[dict[str, Any]] = []
        replayed = json.loads(ws.receive_text())  # the replay of al_plate_1
        got.append(replayed)
        AlertStore(r, cfg).save_new([_alert("al_plate_2", AlertKind.PLATE, "police", [], [])])
        AlertStore(r, cfg).transition("al_plate_2", "acknowledged", actor="x")  # type: ignore[arg-type]
        types: list[str] = []
        while len([m for m in got if m["type"] in ("alert", "alert_event")]) < 3:
            msg = json.loads(ws.receive_text())
            types.append(msg["type"])
            got.append(msg)
    texts = [json.dumps(m, ensure_ascii=False) for m in got if m["type"] != "heartbeat"]
    assert {m["type"] for m in got} >= {"alert", "alert_event"}
    for t in texts:
        assert _plate_free(t) is not visible, t


DAY = 86400.0
RETENTION = [
    # (read ages in days, retention days, ages a query returns after one new read)
    ([5.0, 2.0], 3, [2.0, 0.0]),  # the case: a 5-day-old read with 3-day retention
    ([10.0, 6.0, 2.9], 3, [2.9, 0.0]),
    ([0.5], 1, [0.5, 0.0]),
]


@pytest.mark.parametrize(("ages", "days", "kept"), RETENTION)
def test_plate_reads_expire_per_read(
    r: redis.Redis, ages: list[float], days: int, kept: list[float]
) -> None:
    from serve_app.store.plates import PlateReads

    cfg = CitysightConfig.model_validate({"retention": {"plate_read_ttl_s": days * 86400}})
    pr = PlateReads(r, cfg)
    now = 1_800_000_000.0
    for a in ages:  # a plate seen every few days: each write renewed the old set's TTL
        pr.add_many([(PLATE, f"cam-{a}", now - a * DAY, 0.9)], now=now - a * DAY)
    pr.add_many([(PLATE, "cam-now", now, 0.9)], now=now)
    got = [round((now - x["t"]) / DAY, 1) for x in pr.query(PLATE, None, None, now=now)]
    assert got == kept
    raw = r.zrange(f"citysight:plates:{PLATE}", 0, -1, withscores=True)
    assert all(now - s <= days * DAY for _, s in raw)  # trimmed in Redis, not only filtered


def test_plate_sweep_trims_plates_never_seen_again(r: redis.Redis) -> None:
    from serve_app.store.plates import PlateReads

    cfg = CitysightConfig.model_validate({"retention": {"plate_read_ttl_s": 86400}})
    pr = PlateReads(r, cfg)
    now = 1_800_000_000.0
    for i in range(30):
        pr.add_many(
            [(f"ZZ{i:03d}", "c", now - 2 * DAY, 0.9), (f"ZZ{i:03d}", "c", now, 0.9)],
            now=now - 2 * DAY,
        )
    # (written 2 days ago with both reads: the old one was within retention then)
    removed = 0
    for _ in range(20):  # a few SCAN pages cover every plate
        removed += pr.sweep(now=now, count=10)
    assert removed == 30
    assert all(r.zcard(f"citysight:plates:ZZ{i:03d}") == 1 for i in range(30))
    # A query is bounded even before the sweep, and by its limit.
    for i in range(50):
        r.zadd(f"citysight:plates:{PLATE}", {json.dumps({"camera_id": "c", "t": now - i}): now - i})
    r.zadd(
        f"citysight:plates:{PLATE}",
        {json.dumps({"camera_id": "old", "t": now - 9 * DAY}): now - 9 * DAY},
    )
    assert len(pr.query(PLATE, None, None, limit=7, now=now)) == 7
    assert all(x["camera_id"] != "old" for x in pr.query(PLATE, None, None, now=now))


PLATE_QUERIES = [
    # (how, body or query, status)
    ("no reason", {}, 400),
    ("empty reason", {"reason": ""}, 400),
    ("blank reason", {"reason": "   "}, 400),
    ("reason in the query string", "?reason=case+7", 405),
    ("limit over the cap", {"reason": "case 7", "limit": 100_001}, 422),
    ("unknown field", {"reason": "case 7", "plate_text": "x"}, 422),
    ("a reason", {"reason": "case 7", "limit": 5}, 200),
]


@pytest.mark.parametrize(("how", "arg", "status"), PLATE_QUERIES)
def test_a_plate_query_needs_a_reason_in_the_body_and_is_audited(
    plate_client: tuple[TestClient, redis.Redis, CitysightConfig],
    how: str,
    arg: dict[str, Any] | str,
    status: int,
) -> None:
    client, r, cfg = plate_client
    from serve_app.store.audit import AuditLog

    before = len(AuditLog(r, cfg).list(limit=1000))
    url = "/api/plates/AB123/reads"
    if isinstance(arg, str):
        res = client.get(url + arg, headers=_h("police"))
    else:
        res = client.post(url, json=arg, headers=_h("police"))
    assert res.status_code == status, (how, res.text)  # the old code: GET, 200, reason ""
    recs = AuditLog(r, cfg).list(limit=1000)
    if status == 200:
        assert recs[0]["action"] == "plates.query" and recs[0]["reason"] == "case 7"
        assert res.json()["limit"] == 5
    else:
        assert len(recs) == before, "a refused query leaves no audit record"


# -- finding 11: monitoring exposure, secrets out of URLs, CSP, tooltips as text ----------

HOSTILE_NAME = '<img src=x onerror="window.__xss=1">Longhua'


@pytest.fixture
def api_client(redis_url: str) -> Iterator[tuple[TestClient, redis.Redis]]:
    r = redis.Redis.from_url(redis_url)
    seed_principals(r, {**ROLES, "monitor": {"department": "", "scopes": ["monitoring:read"]}})
    cfg = _cfg("/nonexistent")
    AlertStore(r, cfg).save_new([_alert("al_f11", AlertKind.FIRE, "fire", [], [])])
    EvidenceStore(r, cfg).put(
        "al_f11", cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    )
    with TestClient(create_api(cfg, redis_url)) as c:  # a remote caller ("testclient")
        yield c, r
    r.close()


MONITORING = [
    # (path, caller, token role, status, detail shown)
    ("/health", "remote", None, 200, False),  # minimal public liveness
    ("/health", "remote", "fire", 200, False),  # a department token is not monitoring
    ("/health", "remote", "monitor", 200, True),
    ("/health", "local", None, 200, True),  # the embedded default's operator and probes
    ("/metrics", "remote", None, 401, False),
    ("/metrics", "remote", "fire", 403, False),
    ("/metrics", "remote", "monitor", 200, True),
    ("/metrics", "local", None, 200, True),  # Prometheus on the same host
]


@pytest.mark.parametrize(("path", "caller", "role", "status", "detail"), MONITORING)
def test_health_detail_and_metrics_need_a_local_caller_or_monitoring_read(
    redis_url: str,
    r: redis.Redis,
    path: str,
    caller: str,
    role: str | None,
    status: int,
    detail: bool,
) -> None:
    seed_principals(r, {"monitor": {"department": "", "scopes": ["monitoring:read"]}, **ROLES})
    client_addr = ("127.0.0.1", 40000) if caller == "local" else ("198.51.100.7", 40000)
    with TestClient(create_api(_cfg("/nonexistent"), redis_url), client=client_addr) as c:
        res = c.get(path, headers=_h(role) if role else {})
    assert res.status_code == status, res.text  # the old code: 200 with everything
    if path == "/health":
        body = res.json()
        assert ("components" in body) is detail and "status" in body
        if not detail:
            assert set(body) == {"status"}
    elif detail:
        assert "citysight_ws_clients" in res.text


def test_local_monitoring_off_makes_loopback_callers_show_a_token(
    redis_url: str, r: redis.Redis
) -> None:
    cfg = CitysightConfig.model_validate({"services": {"http": {"local_monitoring": False}}})
    with TestClient(create_api(cfg, redis_url), client=("127.0.0.1", 40000)) as c:
        assert c.get("/metrics").status_code == 401
        assert set(c.get("/health").json()) == {"status"}
        assert "components" in c.get("/health", headers=_h("admin")).json()


SECRETS_IN_URLS = [
    # (request, status): reasons and tickets never travel in a query string
    ("GET /api/alerts/al_f11/evidence?unredacted=true&reason=warrant+7", 400),
    ("POST /api/alerts/al_f11/evidence/unredacted {}", 422),
    ('POST /api/alerts/al_f11/evidence/unredacted {"reason": "  "}', 422),
    ('POST /api/alerts/al_f11/evidence/unredacted {"reason": "warrant 7"}', 200),
]


@pytest.mark.parametrize(("request_line", "status"), SECRETS_IN_URLS)
def test_unredacted_reason_travels_in_the_body(
    api_client: tuple[TestClient, redis.Redis], request_line: str, status: int
) -> None:
    client, _ = api_client
    method, rest = request_line.split(" ", 1)
    url, _, body = rest.partition(" ")
    res = client.request(method, url, json=json.loads(body) if body else None, headers=_h("admin"))
    assert res.status_code == status, res.text  # the old code: 200 for the query form
    audit = client.get("/api/audit", headers=_h("admin")).json()["records"]
    unredacted = [x for x in audit if x["action"] == "evidence.unredacted"]
    if status == 200:
        assert res.headers["x-redacted"] == "false" and unredacted[0]["reason"] == "warrant 7"
    else:
        assert unredacted == []


@pytest.mark.parametrize(("how", "status"), [("query", 400), ("subprotocol", 101)])
def test_websocket_tickets_travel_in_a_subprotocol_not_the_url(
    api_client: tuple[TestClient, redis.Redis], how: str, status: int
) -> None:
    from starlette.testclient import WebSocketDenialResponse

    client, _ = api_client
    ticket = client.post("/api/ws-tickets", headers=_h("fire")).json()["ticket"]
    if how == "query":
        # The old code accepted it.
        with (
            pytest.raises(WebSocketDenialResponse) as info,
            client.websocket_connect(f"/ws?ticket={ticket}"),
        ):
            pass
        assert info.value.status_code == status
        assert "subprotocol" in info.value.json()["detail"]
    else:
        with client.websocket_connect(
            "/ws", subprotocols=["citysight-v1", f"ticket.{ticket}"]
        ) as ws:
            assert ws.accepted_subprotocol == "citysight-v1"


def test_map_page_runs_under_a_csp_and_renders_names_as_text(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    """Real Chromium: the map loads, a login works, the feed goes live, evidence shows (a blob
    image) and an unredacted reveal works, all with zero CSP violations; an overlay named
    like an ``<img onerror>`` shows as that text in its tooltip and runs nothing."""
    import shutil

    playwright_api = pytest.importorskip("playwright.sync_api")
    from benchmarks.fanout.world import ServerThread
    from benchmarks.map import run as bench
    from citysight.app.services.redis_server import free_port
    from serve_app.store.cameras import CameraRegistry

    if shutil.which(bench.CHROMIUM) is None:
        pytest.skip(f"no Chromium at {bench.CHROMIUM}")
    overlay = tmp_path / "d.geojson"
    ring = [[110.3, 20.0], [110.4, 20.0], [110.4, 20.1], [110.3, 20.1], [110.3, 20.0]]
    feature = {"type": "Feature", "properties": {"name": HOSTILE_NAME},
               "geometry": {"type": "Polygon", "coordinates": [ring]}}  # fmt: skip
    overlay.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    cfg = CitysightConfig.model_validate(
        {
            "departments": [{"id": d} for d in ("fire", "enforcement", "police")],
            "map": {"overlays": [{"name": "districts", "path": str(overlay)}]},
        }
    )
    CameraRegistry(r).put(
        CameraConfig(
            id="cam-1", name=HOSTILE_NAME, url="rtsp://10.0.0.1/s", latitude=20.05, longitude=110.35
        )
    )
    alert = _alert("al_csp", AlertKind.FIRE, "fire", [[10, 10, 60, 60]], [int(ObjectClass.FIRE)])
    alert = alert.model_copy(update={"location": Location(lat=20.05, lon=110.35)})
    _seed(r, cfg, alert, np.full((120, 160, 3), 100, np.uint8))
    port = free_port()
    server = ServerThread(create_api(cfg, redis_url), port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=bench.CHROMIUM, args=bench.CHROMIUM_ARGS, headless=True
            )
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.add_init_script(
                "window.__csp = []; document.addEventListener('securitypolicyviolation',"
                " (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            console: list[str] = []
            errors: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            res = page.goto(base + "/")
            assert res is not None
            csp = res.headers.get("content-security-policy", "")
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp  # old: none
            page.get_by_test_id("token-input").fill(token_of("admin"))
            page.get_by_test_id("login-button").click()
            page.wait_for_selector("body[data-ready=true]")
            expect = playwright_api.expect
            expect(page.get_by_test_id("ws-status")).to_have_attribute("data-state", "live")
            expect(page.locator(".leaflet-container")).to_be_visible()
            # The overlay's tooltip: the name as text, no element made from it. The map
            # draws on a canvas and sits zoomed in on the camera inside the overlay, so a
            # point of the map away from the markers is inside the polygon.
            box = page.locator("#map").bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.7)
            tip = page.locator(".leaflet-tooltip")
            expect(tip).to_have_count(1, timeout=5000)
            assert tip.inner_text() == HOSTILE_NAME
            assert tip.locator("img").count() == 0
            # Evidence as a blob image, then the unredacted reveal (reason in a POST body).
            item = page.locator(f"[data-testid=alert-item][data-alert-id='{alert.id}']")
            item.click()
            expect(page.get_by_test_id("snapshot-img")).to_be_visible()
            page.get_by_test_id("reveal-unredacted").click()
            page.get_by_test_id("reveal-reason").fill("incident review 42")
            page.get_by_test_id("reveal-submit").click()
            expect(page.get_by_test_id("snapshot")).to_have_attribute("data-unredacted", "true")
            page.wait_for_timeout(300)
            assert page.evaluate("window.__xss") is None
            assert page.evaluate("window.__csp") == [], page.evaluate("window.__csp")
            assert not [m for m in console if "Content Security Policy" in m], console
            assert errors == [], errors
            browser.close()
    finally:
        server.stop()
