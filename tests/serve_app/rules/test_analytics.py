"""``analytics_down`` through the real rules consumer on a real Redis: raised from the
workers' camera status (running, not analysed), routed to duty and every department fed by
the camera, never twice for one outage (redelivery, a second consumer, a restarted worker),
resolved by ``system`` when analysis resumes, also when the resume message was missed."""

from __future__ import annotations

import json
import time

import pytest
import redis

from citysight import keys
from citysight.config import CitysightConfig
from citysight.contracts import AlertKind, AlertState, CameraState, CameraStatus, Severity
from citysight.keys import ANALYTICS_DOWN as OPEN_KEY
from citysight.keys import CAMERA_STATUS_STREAM
from serve_app.consumer import DetectionsConsumer
from serve_app.rules.analytics import departments_for
from serve_app.store import AlertStore

CFG = CitysightConfig.model_validate({
    "cameras": [
        {"id": "gate", "url": "rtsp://h/1", "latitude": 20.0, "longitude": 110.3,
         "jurisdiction": "longhua", "detectors": ["fire_smoke", "plate"]},
        {"id": "market", "url": "rtsp://h/2", "latitude": 20.1, "longitude": 110.3,
         "detectors": ["vending"]},
    ],
    "departments": [
        {"id": "duty"}, {"id": "police", "supervisor": "duty"},
        {"id": "fire", "supervisor": "duty"}, {"id": "enforcement", "supervisor": "duty"},
    ],
    "routing": [
        {"kind": "fire", "department": "fire"}, {"kind": "smoke", "department": "fire"},
        {"kind": "plate", "department": "police"}, {"kind": "vending", "department": "enforcement"},
        {"kind": "camera_offline", "department": "duty"},
        {"kind": "analytics_down", "department": "duty"},
    ],
})  # fmt: skip


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def consumer(url: str, name: str = "a") -> DetectionsConsumer:
    c = DetectionsConsumer(url, CFG, name, [0], block_ms=5, replay_s=0)
    c.setup()
    return c


def status(cid: str, analysed: bool | None, stopped_at: float | None = None) -> CameraStatus:
    return CameraStatus(
        camera_id=cid,
        state=CameraState.RUNNING,
        analysed=analysed,
        analysis_stopped_at=stopped_at if analysed is False else None,
        metrics={"frames_out": 100.0, "frames_analysed": 10.0},
    )


def send(r: redis.Redis, *sts: CameraStatus) -> None:
    for st in sts:
        r.xadd(CAMERA_STATUS_STREAM, {"d": st.to_msgpack()})


def drain(*cs: DetectionsConsumer, steps: int = 3) -> None:
    for _ in range(steps):
        for c in cs:
            c.step()


def analytics(r: redis.Redis) -> list:
    return AlertStore(r, CFG).query(kinds={"analytics_down"}, limit=100)


def test_departments_are_duty_and_every_department_the_camera_feeds() -> None:
    assert departments_for(CFG, CFG.camera("gate"), "longhua") == ["duty", "fire", "police"]
    assert departments_for(CFG, CFG.camera("market"), "default") == ["duty", "enforcement"]
    assert departments_for(CFG, None, "default") == ["duty"]
    no_route = CFG.model_copy(update={"routing": []})
    assert departments_for(no_route, CFG.camera("gate"), "longhua") == ["unrouted"]


def test_raised_once_per_outage_and_resolved_by_system(r: redis.Redis, redis_url: str) -> None:
    a, b = consumer(redis_url, "a"), consumer(redis_url, "b")  # two replicas, one group
    t0 = time.time() - 12
    send(r, status("gate", True), status("gate", False, t0))
    drain(a, b)
    alerts = analytics(r)
    assert sorted(x.department for x in alerts) == ["duty", "fire", "police"]
    for x in alerts:
        assert x.kind is AlertKind.ANALYTICS_DOWN and x.severity is Severity.HIGH
        assert x.camera_id == "gate" and x.state is AlertState.RAISED
        assert abs(x.started_at.timestamp() - t0) < 1
    ids = {x.id for x in alerts}
    # Each department sees its own alert through the store's department scope.
    store = AlertStore(r, CFG)
    assert {x.id for x in store.query(departments={"fire"})} <= ids
    assert len(store.query(departments={"enforcement"})) == 0
    # The same status again (redelivered, or read by the other replica), and a worker that
    # restarted mid-outage with a later start time: still one set of alerts.
    send(r, status("gate", False, t0), status("gate", False, t0 + 30))
    drain(b, a)
    assert {x.id for x in analytics(r)} == ids
    assert json.loads(r.hget(OPEN_KEY, "gate"))["ids"] == sorted(ids)
    # Analysis resumes: every alert of the outage is resolved, by system.
    send(r, status("gate", True))
    drain(a, b)
    for x in analytics(r):
        assert x.state is AlertState.RESOLVED and x.outcome == "recovered", x
        ev = store.events(x.id)[-1]
        assert ev.actor == "system" and ev.to_state is AlertState.RESOLVED
    assert r.hget(OPEN_KEY, "gate") is None
    # A later outage is a new set of alerts.
    send(r, status("gate", False, t0 + 100))
    drain(a, b)
    open_now = [x for x in analytics(r) if x.state is AlertState.RAISED]
    assert len(open_now) == 3 and not {x.id for x in open_now} & ids


def test_missed_resume_is_reconciled_from_camera_health(r: redis.Redis, redis_url: str) -> None:
    c = consumer(redis_url)
    send(r, status("market", False, time.time() - 15))
    drain(c)
    assert sorted(x.department for x in analytics(r)) == ["duty", "enforcement"]
    c.maintain()  # camera health still says not analysed (or nothing): stays open
    assert all(x.state is AlertState.RAISED for x in analytics(r))
    # The worker's health hash says analysed again; its status message never arrived.
    r.hset(keys.CAMERA_HEALTH, "market", status("market", True).model_dump_json())
    c.maintain()
    assert all(x.state is AlertState.RESOLVED for x in analytics(r))
    assert r.hlen(OPEN_KEY) == 0


def test_not_raised_for_a_camera_that_is_not_running(r: redis.Redis, redis_url: str) -> None:
    c = consumer(redis_url)
    st = status("gate", False, time.time() - 20)
    st.state = CameraState.OFFLINE  # camera_offline's business, not analytics_down's
    send(r, st, status("market", None))
    drain(c)
    assert analytics(r) == []
