"""DetectionsConsumer on a real Redis: ack-after-write, pending-first restart, XAUTOCLAIM,
dead-lettering, MINID trimming, replay of rule state, redelivery without duplicates."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import redis

from citysight.config import CitysightConfig
from citysight.contracts import (
    CAMERA_STATUS_STREAM,
    CameraState,
    CameraStatus,
    FrameResult,
    ObjectClass,
    detections_stream,
)
from serve_app.consumer import GROUP, DetectionsConsumer
from serve_app.store import AlertStore

S0 = detections_stream(0)
CFG = CitysightConfig.model_validate({
    "cameras": [{"id": f"c{i}", "url": f"rtsp://h/{i}", "latitude": 52 + i, "longitude": 4}
                for i in range(4)],
    "departments": [{"id": "fire"}, {"id": "police"}],
    "routing": [{"kind": "fire", "department": "fire"}, {"kind": "*", "department": "police"}],
})  # fmt: skip


def frame(cam: str, n: int, fire: bool, t0: float) -> FrameResult:
    k = 1 if fire else 0
    return FrameResult(
        camera_id=cam,
        frame_time=t0 + n * 0.2,
        frame_no=n,
        width=100,
        height=100,
        boxes=np.tile([[10, 10, 50, 50]], (k, 1)),
        scores=np.full(k, 0.9),
        class_ids=np.full(k, int(ObjectClass.FIRE)),
        published_at=time.time(),
    )


def publish(r: redis.Redis, frames: list[FrameResult], stream: str = S0) -> list[str]:
    return [r.xadd(stream, {"d": f.to_msgpack()}).decode() for f in frames]


def fire_frames(cams: int, n: int, t0: float) -> list[FrameResult]:
    """Each camera: fire in frames 0-2 (one alert with the default 3-of-5 rule)."""
    return [frame(f"c{c}", i, i < 3, t0) for i in range(n) for c in range(cams)]


def consumer(url: str, name: str = "a", **kw) -> DetectionsConsumer:
    kw = {
        "block_ms": 5,
        "claim_min_idle_ms": 100,
        "claim_interval_s": 0.0,
        "retry_interval_s": 0.0,
        "replay_s": 30.0,
        **kw,
    }
    c = DetectionsConsumer(url, CFG, name, [0], **kw)
    c.setup()
    return c


def drain(c: DetectionsConsumer, steps: int = 20) -> None:
    for _ in range(steps):
        c.step()


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def n_pending(r: redis.Redis, stream: str = S0) -> int:
    return int(r.xpending(stream, GROUP)["pending"])


def test_alerts_written_then_acked(r: redis.Redis, redis_url: str) -> None:
    c = consumer(redis_url)
    publish(r, fire_frames(3, 6, time.time()))
    drain(c, 5)
    alerts = AlertStore(r, CFG).query(limit=100)
    assert sorted(a.camera_id for a in alerts) == ["c0", "c1", "c2"]
    assert n_pending(r) == 0 and c.stats["processed"] == 18 and c.stats["alerts"] == 3
    status = json.loads(r.hget("citysight:components", "rules"))
    assert status["state"] == "running" and status["detail"]["processed"] == 18


def test_redelivery_of_everything_gives_no_duplicates(r: redis.Redis, redis_url: str) -> None:
    publish(r, fire_frames(4, 8, time.time()))
    c = consumer(redis_url)
    drain(c, 5)
    before = {a.id for a in AlertStore(r, CFG).query(limit=100)}
    feed_before = r.xlen("citysight:feed")
    r.xgroup_setid(S0, GROUP, "0")  # every entry is delivered again
    c2 = consumer(redis_url, "b", replay_s=0)  # fresh state, no replay: worst case
    drain(c2, 5)
    after = AlertStore(r, CFG).query(limit=100)
    assert {a.id for a in after} == before and len(after) == 4
    assert r.xlen("citysight:feed") == feed_before
    assert all(len(AlertStore(r, CFG).events(a.id)) == 1 for a in after)


def test_restart_reads_own_pending_first(r: redis.Redis, redis_url: str) -> None:
    c = consumer(redis_url, "a")
    publish(r, fire_frames(2, 5, time.time()))
    r.xreadgroup(GROUP, "a", {S0: ">"}, count=100)  # delivered to "a", which then "crashed"
    assert n_pending(r) == 10
    c2 = consumer(redis_url, "a")  # same name: its pending entries come first
    handled = c2.step()
    assert handled == 10 and n_pending(r) == 0
    assert len(AlertStore(r, CFG).query()) == 2
    del c


def test_xautoclaim_takes_over_a_dead_consumer(r: redis.Redis, redis_url: str) -> None:
    consumer(redis_url, "live")
    publish(r, fire_frames(2, 5, time.time()))
    r.xreadgroup(GROUP, "dead", {S0: ">"}, count=100)
    live = consumer(redis_url, "live", replay_s=0)
    live.step()  # too fresh to claim
    assert n_pending(r) == 10
    time.sleep(0.15)
    live.step()
    assert n_pending(r) == 0 and live.stats["claimed"] == 10
    assert len(AlertStore(r, CFG).query()) == 2


def test_poison_entries_are_dead_lettered_after_n_deliveries(
    r: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = consumer(redis_url, "a", max_deliveries=3)
    t0 = time.time()
    ids = publish(r, [frame("c1", 0, False, t0)])
    r.xadd(S0, {"d": b"\xc1garbage"})
    crash = publish(r, [frame("c9", 0, True, t0)])
    ids += publish(r, [frame("c1", 1, False, t0)])
    real = c.engine._eval_camera

    def boom(cid, *a, **kw):
        if cid == "c9":
            raise RuntimeError("rule bug")
        return real(cid, *a, **kw)

    monkeypatch.setattr(c.engine, "_eval_camera", boom)
    c.step()
    assert n_pending(r) == 2  # good entries acked, the two bad ones retried
    assert r.xlen("citysight:detections:dead") == 0
    drain(c, 6)
    assert n_pending(r) == 0
    dead = r.xrange("citysight:detections:dead")
    assert len(dead) == 2
    assert {f[b"deliveries"] for _, f in dead} == {b"3"}
    assert {f[b"src"] for _, f in dead} == {S0.encode()}
    assert crash[0].encode() in {f[b"id"] for _, f in dead}
    assert any(f[b"error"].startswith(b"decode") for _, f in dead)


def test_minid_trim_never_drops_pending(r: redis.Redis, redis_url: str) -> None:
    c = consumer(redis_url, "a")
    old_ms = int((time.time() - 7200) * 1000)  # two hours old: past detections_max_age_s
    t0 = time.time()
    ids = [
        r.xadd(S0, {"d": frame("c1", i, False, t0).to_msgpack()}, id=f"{old_ms + i}-0").decode()
        for i in range(10)
    ]
    got = r.xreadgroup(GROUP, "dead", {S0: ">"}, count=6)  # 0-5 delivered to "dead"
    assert len(got[0][1]) == 6
    r.xack(S0, GROUP, *ids[:3])  # 0-2 acked; 3-5 pending; 6-9 never delivered
    c.trim_stream(S0)
    left = [i.decode() for i, _ in r.xrange(S0)]
    assert left == ids[3:]
    claimed = r.xautoclaim(S0, GROUP, "x", 0, count=100)
    assert [i.decode() for i, _ in claimed[1]] == ids[3:6] and claimed[2] == []
    # nothing pending and all delivered: everything older than the age cutoff goes
    r.xack(S0, GROUP, *ids[3:6])
    r.xreadgroup(GROUP, "x", {S0: ">"}, count=100)
    r.xack(S0, GROUP, *ids[6:])
    c.trim_stream(S0)
    assert r.xlen(S0) == 0


def test_replay_rebuilds_persistence_after_restart(r: redis.Redis, redis_url: str) -> None:
    t0 = time.time()
    frames = [frame("c1", i, True, t0) for i in range(3)]
    ref = consumer(redis_url, "ref")
    publish(r, frames, detections_stream(1))
    # reference: what an uninterrupted run raises (on shard 1, same data)
    ref_c = DetectionsConsumer(redis_url, CFG, "ref", [1], block_ms=5)
    ref_c.setup()
    drain(ref_c, 3)
    expected = {a.id for a in AlertStore(r, CFG).query()}
    r.delete("citysight:alerts:all", "citysight:rules:cooldown")
    for k in r.scan_iter("citysight:alert:*"):
        r.delete(k)
    del ref
    a = consumer(redis_url, "a")
    publish(r, frames[:2])
    drain(a, 2)  # two hits, acked, no alert yet
    assert AlertStore(r, CFG).query() == [] and n_pending(r) == 0
    publish(r, frames[2:])
    b = consumer(redis_url, "a")  # restart: fresh engine, replays the two acked frames
    drain(b, 2)
    assert {x.id for x in AlertStore(r, CFG).query()} == expected and len(expected) == 1


def test_camera_offline_alert(r: redis.Redis, redis_url: str) -> None:
    c = consumer(redis_url)
    for st in (CameraState.RUNNING, CameraState.OFFLINE, CameraState.OFFLINE):
        r.xadd(
            CAMERA_STATUS_STREAM,
            {"d": CameraStatus(camera_id="c2", state=st, reason="no frames").to_msgpack()},
        )
    drain(c, 2)
    (a,) = AlertStore(r, CFG).query()
    assert a.kind == "camera_offline" and a.camera_id == "c2" and a.department == "police"
    assert n_pending(r, CAMERA_STATUS_STREAM) == 0
    relayed = [f for _, f in r.xrange("citysight:feed") if f[b"type"] == b"camera_status"]
    assert len(relayed) == 3 and {f[b"department"] for f in relayed} == {b"police"}
    assert json.loads(relayed[1][b"d"])["state"] == "offline"


def test_threaded_run_and_stop(r: redis.Redis, redis_url: str) -> None:
    c = DetectionsConsumer(redis_url, CFG, "t", [0], block_ms=20)
    c.start()
    publish(r, fire_frames(2, 5, time.time()))
    deadline = time.time() + 5
    while time.time() < deadline and c.stats["processed"] < 10:
        time.sleep(0.02)
    c.stop()
    assert not c.alive() and c.stats["processed"] == 10 and c.stats["alerts"] == 2
