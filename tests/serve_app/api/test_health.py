"""``GET /health`` tells the truth: real Redis, the production FastAPI app in process.

Table-driven: component records as the runtime, the workers and the rules consumer write
them, camera health as the stream workers write it, and the status and states expected.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from citysight import keys
from citysight.config import CameraConfig, CitysightConfig
from citysight.contracts import CameraState, CameraStatus
from serve_app.http import create_api

CAMS = ("c1", "c2")


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    with TestClient(create_api(CitysightConfig(), redis_url)) as c:
        yield c


Rec = Callable[[], str]
"""A record rendered when the test writes it (times relative to then, not to collection)."""


def comp(state: str, age_s: float = 0.0, **detail: Any) -> Rec:
    """A component record as the runtime, workers and consumers write it."""
    return lambda: json.dumps({"state": state, "detail": detail, "updated_at": time.time() - age_s})


def cam(cid: str, state: str = "running", analysed: bool | None = True, age_s: float = 0) -> Rec:
    """A camera health record as a stream worker writes it."""
    return lambda: CameraStatus(
        camera_id=cid,
        state=CameraState(state),
        at=time.time() - age_s,
        analysed=analysed,
        metrics={"frames_analysed": 5.0},
    ).model_dump_json()


RUNNING = {
    "ray": comp("running"),
    "rules": comp("running", processed=10),
    "streams": comp("running"),
    "inference": comp("running", frames_ok=7, frames_dropped=0),
}
ANALYSED = {c: cam(c) for c in CAMS}
NOT_ANALYSED = {c: cam(c, analysed=False) for c in CAMS}


@pytest.mark.parametrize(
    ("components", "cameras", "status", "states"),
    [
        pytest.param(RUNNING, ANALYSED, "ok", {"inference": "running", "cameras": "running"},
                     id="all-running"),
        pytest.param({**RUNNING, "inference": comp("down", frames_ok=7)}, NOT_ANALYSED, "down",
                     {"inference": "down", "cameras": "degraded"}, id="inference-down"),
        pytest.param({**RUNNING, "inference": comp("degraded", frames_ok=7)},
                     {"c1": cam("c1"), "c2": cam("c2", analysed=False)}, "degraded",
                     {"inference": "degraded", "cameras": "degraded"}, id="dropping-frames"),
        pytest.param(RUNNING, NOT_ANALYSED, "down", {"inference": "running"},
                     id="no-camera-analysed"),
        pytest.param({**RUNNING, "rules": comp("stuck", processed=10)}, ANALYSED, "degraded",
                     {"rules": "stuck"}, id="rules-stuck"),
        pytest.param({**RUNNING, "streams": comp("degraded", unreachable_workers=["w1"])},
                     ANALYSED, "degraded", {"streams": "degraded"}, id="worker-dead"),
        pytest.param({**RUNNING, "inference": comp("running", age_s=120)}, ANALYSED, "degraded",
                     {"inference": "stale"}, id="inference-silent"),
        pytest.param(RUNNING, {c: cam(c, analysed=None) for c in CAMS}, "degraded",
                     {"cameras": "starting"}, id="cameras-starting"),
        pytest.param(RUNNING, {"c1": cam("c1"), "c2": cam("c2", "offline", None)}, "degraded",
                     {"cameras": "degraded"}, id="camera-offline"),
        pytest.param(RUNNING, {"c1": cam("c1"), "c2": cam("c2", age_s=300)}, "degraded",
                     {"cameras": "degraded"}, id="camera-health-stale"),
        pytest.param(RUNNING, {c: cam(c, "offline", None) for c in CAMS}, "down",
                     {"cameras": "degraded"}, id="every-camera-offline"),
        # Parts (one record per worker): one healthy worker never hides a broken one.
        pytest.param(
            {**{k: v for k, v in RUNNING.items() if k != "inference"},
             "inference:w0": comp("running", frames_ok=5), "inference:w1": comp("down")},
            {"c1": cam("c1"), "c2": cam("c2", analysed=False)}, "degraded",
            {"inference": "degraded"}, id="one-of-two-workers-down"),
        pytest.param(
            {**{k: v for k, v in RUNNING.items() if k != "inference"},
             "inference:w0": comp("down"), "inference:w1": comp("down")},
            NOT_ANALYSED, "down", {"inference": "down"}, id="every-worker-down"),
        pytest.param(RUNNING, {"c1": cam("c1")}, "degraded", {"cameras": "degraded"},
                     id="camera-never-reported"),
        pytest.param(RUNNING, {}, "degraded", {"cameras": "degraded"}, id="no-camera-reported"),
        pytest.param({k: v for k, v in RUNNING.items() if k != "inference"}, ANALYSED,
                     "degraded", {"inference": "unknown"}, id="inference-never-reported"),
    ],
)  # fmt: skip
def test_status_and_states(
    r: redis.Redis,
    client: TestClient,
    components: dict[str, Rec],
    cameras: dict[str, Rec],
    status: str,
    states: dict[str, str],
) -> None:
    for cid in CAMS:
        r.hset(keys.CAMERAS, cid, CameraConfig(id=cid, url=f"rtsp://h/{cid}", latitude=0,
                                                longitude=0).model_dump_json())  # fmt: skip
    r.hset(keys.COMPONENTS, mapping={k: v() for k, v in components.items()})
    if cameras:
        r.hset(keys.CAMERA_HEALTH, mapping={k: v() for k, v in cameras.items()})
    resp = client.get("/health")
    body = resp.json()
    assert body["status"] == status, body
    assert resp.status_code == (503 if status == "down" else 200)
    for name, state in states.items():
        assert body["components"][name]["state"] == state, (name, body["components"][name])


def test_frames_ok_stays_and_parts_are_summed(r: redis.Redis, client: TestClient) -> None:
    r.hset(keys.COMPONENTS, mapping={"inference:w0": comp("running", frames_ok=5)(),
                                     "inference:w1": comp("running", frames_ok=7)()})  # fmt: skip
    inf = client.get("/health").json()["components"]["inference"]
    assert inf["state"] == "running"
    assert inf["detail"]["frames_ok"] == 12 and set(inf["detail"]["parts"]) == {"w0", "w1"}
    r.delete(keys.COMPONENTS)  # one record (one writer): kept as written
    r.hset(keys.COMPONENTS, "inference", comp("running", frames_ok=3)())
    assert client.get("/health").json()["components"]["inference"]["detail"]["frames_ok"] == 3


def test_a_long_silent_part_is_dropped_and_a_deleted_camera_ignored(
    r: redis.Redis, client: TestClient
) -> None:
    r.hset(keys.COMPONENTS, mapping={"rules:old": comp("running", age_s=3600)(),
                                     "rules:new": comp("running")()})  # fmt: skip
    r.hset(keys.CAMERA_HEALTH, "deleted-cam", cam("deleted-cam", "offline", None)())
    body = client.get("/health").json()
    assert body["components"]["rules"]["state"] == "running"
    assert r.hkeys(keys.COMPONENTS) == [b"rules:new"]
    assert body["components"]["cameras"] == {
        "state": "running",
        "detail": {"enabled": 0, "analysed": [], "frames_analysed": 0},
    }


def test_redis_down_is_down(client: TestClient, redis_server: Any) -> None:
    client.app.state.ctx.redis.connection_pool.reset()
    client.app.state.ctx.redis = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.5)
    resp = client.get("/health")
    assert resp.status_code == 503 and resp.json()["status"] == "down"
    assert resp.json()["components"]["redis"]["state"] == "failed"
