"""Camera re-check of resolved alerts, through the real rules consumer on a real Redis.

A smoke alert raised by frames on ``c0`` is resolved through the store (as the API does);
the consumer then watches ``c0`` for the rule's ``recheck_s``: smoke again → reopened by
``camera-check`` with the new sighting's snapshot; quiet frames up to the deadline →
``verified`` (and closed, by config); no frames at all → ``recheck_failed``, never verified.
The watch lives in Redis, so a consumer restarted between the resolution and the deadline
still verifies. Frame times are real wall times (the deadline is a wall time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import pytest
import redis

from citysight import keys
from citysight.config import CitysightConfig
from citysight.contracts import Alert, AlertState, FrameResult, ObjectClass
from citysight.keys import detections_stream
from serve_app.consumer import DetectionsConsumer
from serve_app.rules.recheck import CAMERA_CHECK
from serve_app.store import AlertStore

S0 = detections_stream(0)
RECHECK_S = 2.0


def _cfg(close: bool = True, recheck_s: float = RECHECK_S) -> CitysightConfig:
    return CitysightConfig.model_validate({
        "cameras": [{"id": f"c{i}", "url": f"rtsp://h/{i}", "latitude": 20.0 + i / 100,
                     "longitude": 110.0} for i in range(2)],
        "departments": [{"id": "fire"}],
        "routing": [{"kind": "*", "department": "fire"}],
        "services": {"streams": {"shards": 1}},
        "rules": [{
            "id": "smoke", "type": "presence", "kind": "smoke", "classes": ["smoke"],
            "persistence": {"on_frames": 2, "window_frames": 3, "off_frames": 2},
            "cooldown_s": 0, "recheck_s": recheck_s, "recheck_close": close,
        }],
    })  # fmt: skip


def _frame(cam: str, n: int, smoke: bool, t: float, snap: str = "") -> FrameResult:
    k = 1 if smoke else 0
    return FrameResult(
        camera_id=cam, frame_time=t, frame_no=n, width=100, height=100,
        boxes=np.tile([[10, 10, 50, 50]], (k, 1)), scores=np.full(k, 0.9),
        class_ids=np.full(k, int(ObjectClass.SMOKE)), snapshot_key=snap,
    )  # fmt: skip


class Cam:
    """Publishes frames of one camera at the current wall time."""

    def __init__(self, r: redis.Redis, cam: str = "c0") -> None:
        self.r, self.cam, self.n = r, cam, 0

    def send(self, smoke: bool, count: int = 1) -> None:
        for _ in range(count):
            self.n += 1
            snap = ""
            if smoke:  # the stream worker's snapshot of the frame (evidence source)
                snap = keys.snapshot_key(self.cam, self.n)
                self.r.set(snap, b"\xff\xd8\xff-fake-jpeg-of-frame", ex=60)
            f = _frame(self.cam, self.n, smoke, time.time(), snap)
            self.r.xadd(S0, {"d": f.to_msgpack()})


def _consumer(url: str, cfg: CitysightConfig) -> DetectionsConsumer:
    c = DetectionsConsumer(
        url, cfg, "rules-0", [0], block_ms=5, claim_interval_s=60, replay_s=0,
        recheck_interval_s=0.0,
    )  # fmt: skip
    c.setup()
    return c


def _until(c: DetectionsConsumer, pred: Callable[[], bool], cam: Cam | None = None,
           timeout_s: float = 30.0) -> bool:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cam is not None:
            cam.send(False)  # the camera keeps sending quiet frames meanwhile
        c.step()
        if pred():
            return True
        time.sleep(0.05)
    return False


def _raise_and_resolve(r: redis.Redis, c: DetectionsConsumer, cam: Cam) -> Alert:
    store = AlertStore(r, c.cfg)
    cam.send(True, 3)
    cam.send(False, 3)
    assert _until(c, lambda: bool(store.query(limit=5)))
    (alert,) = store.query(limit=5)
    for to, kw in (("acknowledged", {}), ("resolved", {"outcome": "extinguished"})):
        store.transition(alert.id, AlertState(to), actor="officer", **kw)
    assert r.zscore(keys.RECHECK_WATCHES, alert.id) is not None  # written with the transition
    return alert


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_quiet_camera_verifies_and_closes_after_recheck_s(r: redis.Redis, redis_url: str) -> None:
    c = _consumer(redis_url, _cfg(close=True))
    cam = Cam(r)
    alert = _raise_and_resolve(r, c, cam)
    store = AlertStore(r, c.cfg)
    t_resolved = time.monotonic()
    assert _until(c, lambda: store.get(alert.id).state is AlertState.CLOSED, cam)
    took = time.monotonic() - t_resolved
    last = store.events(alert.id)[-1]
    assert (last.actor, last.action, last.from_state, last.to_state) == (
        CAMERA_CHECK,
        "verified",
        AlertState.RESOLVED,
        AlertState.CLOSED,
    )
    assert took >= RECHECK_S  # never before the camera watched for recheck_s
    assert r.zscore(keys.RECHECK_WATCHES, alert.id) is None
    assert c.recheck.stats["verified"] == 1
    c._publish_status()  # what /health's rules component shows
    status = json.loads(r.hget(keys.RULES_CONSUMERS, "rules-0"))
    assert status["detail"]["recheck"]["verified"] == 1
    print(f"recheck verified {took:.2f} s after resolution (recheck_s {RECHECK_S})")


def test_verified_without_close_stays_resolved(r: redis.Redis, redis_url: str) -> None:
    c = _consumer(redis_url, _cfg(close=False))
    cam = Cam(r)
    alert = _raise_and_resolve(r, c, cam)
    store = AlertStore(r, c.cfg)
    assert _until(c, lambda: store.events(alert.id)[-1].action == "verified", cam)
    assert store.get(alert.id).state is AlertState.RESOLVED
    assert r.zscore(keys.RECHECK_WATCHES, alert.id) is None


def test_condition_returning_reopens_with_the_new_sightings_evidence(
    r: redis.Redis, redis_url: str
) -> None:
    c = _consumer(redis_url, _cfg(recheck_s=60))
    cam = Cam(r)
    alert = _raise_and_resolve(r, c, cam)
    store = AlertStore(r, c.cfg)
    c.step()  # the watch is loaded
    cam.send(True, 3)  # the smoke is back
    assert _until(c, lambda: store.get(alert.id).state is AlertState.RAISED)
    a = store.get(alert.id)
    last = store.events(alert.id)[-1]
    assert (last.actor, last.action, last.from_state) == (
        CAMERA_CHECK,
        "reopened",
        AlertState.RESOLVED,
    )
    assert a.outcome is None and len(last.evidence) == 1
    (ref,) = [e for e in a.evidence if e.id == last.evidence[0]]
    assert ref.source == "recheck" and ref.boxes  # the new frame's boxes
    assert r.get(ref.key) == b"\xff\xd8\xff-fake-jpeg-of-frame"
    assert r.ttl(ref.key) > 0  # evidence retention
    assert r.zscore(keys.RECHECK_WATCHES, alert.id) is None


def test_another_camera_seeing_it_does_not_reopen(r: redis.Redis, redis_url: str) -> None:
    c = _consumer(redis_url, _cfg(close=True))
    cam = Cam(r)
    alert = _raise_and_resolve(r, c, cam)
    store = AlertStore(r, c.cfg)
    other = Cam(r, "c1")
    other.send(True, 4)  # smoke on c1: a new alert there, nothing for c0's alert
    assert _until(c, lambda: store.get(alert.id).state is AlertState.CLOSED, cam)
    assert [e.action for e in store.events(alert.id)][-1] == "verified"


def test_watch_survives_a_consumer_restart(r: redis.Redis, redis_url: str) -> None:
    cfg = _cfg(close=True)
    c = _consumer(redis_url, cfg)
    cam = Cam(r)
    alert = _raise_and_resolve(r, c, cam)
    c.stop()
    del c  # the consumer is gone before it ever looked at the watch
    fresh = _consumer(redis_url, cfg)
    store = AlertStore(r, cfg)
    assert _until(fresh, lambda: store.get(alert.id).state is AlertState.CLOSED, cam)
    assert store.events(alert.id)[-1].actor == CAMERA_CHECK


def test_a_camera_sending_nothing_is_never_verified(r: redis.Redis, redis_url: str) -> None:
    c = _consumer(redis_url, _cfg(close=True, recheck_s=1))
    cam = Cam(r)
    alert = _raise_and_resolve(r, c, cam)
    store = AlertStore(r, c.cfg)
    c.recheck.seen.clear()  # as if the camera had stopped before the resolution
    later = time.time() + 1 + 61
    n_events = len(store.events(alert.id))
    c.recheck.tick(now=later, caught_up=False)  # a backlog may still hold the window's frames
    assert len(store.events(alert.id)) == n_events
    assert r.zscore(keys.RECHECK_WATCHES, alert.id) is not None
    c.recheck.tick(now=later)  # past the deadline and the grace period, no frame seen
    a = store.get(alert.id)
    assert a.state is AlertState.RESOLVED
    last = store.events(alert.id)[-1]
    assert (last.actor, last.action) == (CAMERA_CHECK, "recheck_failed")
    assert "verified" not in [e.action for e in store.events(alert.id)]


def test_a_person_moving_the_alert_ends_the_watch(r: redis.Redis, redis_url: str) -> None:
    c = _consumer(redis_url, _cfg(close=True, recheck_s=60))
    cam = Cam(r)
    alert = _raise_and_resolve(r, c, cam)
    store = AlertStore(r, c.cfg)
    store.transition(alert.id, AlertState.CLOSED, actor="officer")
    assert r.zscore(keys.RECHECK_WATCHES, alert.id) is None
    cam.send(True, 3)
    for _ in range(5):
        c.step()
    assert store.get(alert.id).state is AlertState.CLOSED
    assert CAMERA_CHECK not in [e.actor for e in store.events(alert.id)]


def test_rules_without_recheck_do_not_watch(r: redis.Redis, redis_url: str) -> None:
    c = _consumer(redis_url, _cfg(recheck_s=0))
    cam = Cam(r)
    alert = _raise_and_resolve(r, c, cam)
    c.step()
    assert r.zscore(keys.RECHECK_WATCHES, alert.id) is None  # dropped: nothing to re-check
    assert AlertStore(r, c.cfg).get(alert.id).state is AlertState.RESOLVED
