"""DetectionsConsumer on a real Redis: ack-after-write, pending-first restart, XAUTOCLAIM,
dead-lettering, MINID trimming, replay of rule state, redelivery without duplicates."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import redis
from redisha import Proc, add_replica

from citysight.config import CitysightConfig
from citysight.contracts import CameraState, CameraStatus, FrameResult, ObjectClass, shard_of
from citysight.keys import CAMERA_STATUS_STREAM, detections_stream
from citysight.keys import RULES_GROUP as GROUP
from serve_app.consumer import DetectionsConsumer, NotReplicated
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


def _two_groups() -> CitysightConfig:
    return CFG.model_copy(
        update={
            "services": CFG.services.model_validate(
                {"streams": {"shards": 2}, "rules": {"consumers": 2}}
            )
        }
    )


@pytest.mark.parametrize("peer_claims", [True, False])
def test_a_peer_group_takes_over_a_dead_consumers_pending_entries(
    r: redis.Redis, redis_url: str, peer_claims: bool
) -> None:
    """``rules-1`` claims what dead ``rules-0`` held on shard 0: alerts once, even after the
    owner's restart replays the same frames; cameras of shard 0 stay the owner's."""
    cfg = _two_groups()
    kw = {"block_ms": 5, "claim_min_idle_ms": 100, "claim_interval_s": 0.0, "replay_s": 30.0}
    a = DetectionsConsumer(redis_url, cfg, "rules-0", [0], **kw)  # type: ignore[arg-type]
    b = DetectionsConsumer(
        redis_url,
        cfg,
        "rules-1",
        [1],
        claim_peer_shards=peer_claims,
        **kw,  # type: ignore[arg-type]
    )
    a.setup()
    b.setup()
    t0 = time.time()
    frames = [f for f in fire_frames(4, 5, t0) if shard_of(f.camera_id, 2) == 0]
    publish(r, frames, S0)
    r.xreadgroup(GROUP, "rules-0", {S0: ">"}, count=100)  # delivered; its host then died
    del a
    time.sleep(0.15)
    drain(b, 3)
    if not peer_claims:
        assert n_pending(r) == len(frames) and b.stats["claimed_peer"] == 0
        return
    assert n_pending(r) == 0 and b.stats["claimed_peer"] == len(frames)
    alerts = {x.id for x in AlertStore(r, cfg).query(limit=100)}
    cams = {f.camera_id for f in frames}
    assert len(alerts) == len(cams) > 0
    assert not cams & set(b.recheck.seen)  # shard 0's cameras are not b's to re-check
    restarted = DetectionsConsumer(redis_url, cfg, "rules-0", [0], **kw)  # type: ignore[arg-type]
    restarted.setup()  # replays the frames b handled
    drain(restarted, 3)
    assert {x.id for x in AlertStore(r, cfg).query(limit=100)} == alerts


def test_peer_claims_skip_a_shard_whose_group_does_not_exist(
    r: redis.Redis, redis_url: str
) -> None:
    """No consumer of shard 0 ever started (no group there): claiming is not an error."""
    b = DetectionsConsumer(redis_url, _two_groups(), "rules-1", [1], block_ms=5,
                           claim_interval_s=0.0)  # fmt: skip
    b.setup()
    b.step()
    assert b.error == "" and b.stats["claimed_peer"] == 0


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


# -- poison entries, truthful status (issue 11) -----------------------------------------


def _fields(f: FrameResult, **override: object) -> bytes:
    """A frame's msgpack map with some fields replaced (the wire form a producer could send)."""
    d = msgpack.unpackb(f.to_msgpack(), raw=False)
    d.update(override)
    return msgpack.packb(d, use_bin_type=True)


def _one_fire(cam: str, n: int, t0: float) -> FrameResult:
    return frame(cam, n, True, t0)


POISON: list[tuple[str, object]] = [
    # (name, entry fields): each seen or possible on a detections stream
    ("n_inf", lambda f: {"d": _fields(f, n=float("inf"))}),  # OverflowError
    ("extra_list", lambda f: {"d": _fields(f, extra=[1])}),  # AttributeError
    ("garbage", lambda f: {"d": random.Random(11).randbytes(64)}),
    ("t_string", lambda f: {"d": _fields(f, t="noon")}),
    ("t_inf", lambda f: {"d": _fields(f, t=float("inf"))}),  # would poison rule state
    ("cam_int", lambda f: {"d": _fields(f, cam=5)}),
    ("scores_int", lambda f: {"d": _fields(f, scores=5)}),
    ("w_inf", lambda f: {"d": _fields(f, w=float("inf"))}),
    ("plate_text_int", lambda f: {"d": _fields(f, extra={"plate_text": [5]})}),
    ("boxes_nan", lambda f: {"d": _fields(f, boxes=np.full(4, np.nan, "<f4").tobytes())}),
    ("no_d_field", lambda f: {"x": b"1"}),
    ("not_a_map", lambda f: {"d": msgpack.packb([1, 2, 3])}),
]


def _wait_for(pred, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_poison_entries_of_every_kind_are_dead_lettered_and_alerting_goes_on(
    r: redis.Redis, redis_url: str
) -> None:
    """Issue 11: ``n: inf`` / ``extra: [1]`` / garbage / wrong types between good entries.

    The running consumer (its real loop) keeps alerting on the good entries around them,
    dead-letters each poison entry after ``max_deliveries``, ``processed`` keeps growing and
    nothing stays pending.
    """
    t0 = time.time()
    c = DetectionsConsumer(
        redis_url, CFG, "p", [0], block_ms=20, max_deliveries=3, retry_interval_s=0.05
    )
    c.start()
    try:
        before = publish(r, [frame("c0", i, i < 3, t0) for i in range(6)])  # one alert (c0)
        poison_ids = {}
        for k, (name, make) in enumerate(POISON):
            tmpl = frame("c1", 100 + k, k % 2 == 0, t0)  # some with detections, some empty
            poison_ids[r.xadd(S0, make(tmpl)).decode()] = name
            publish(r, [frame("c2", k, False, t0)])  # a good entry between each
        after = publish(r, [frame("c3", i, i < 3, t0) for i in range(6)])  # one alert (c3)
        total = len(before) + len(POISON) * 2 + len(after)
        # entries not read yet are not pending either: wait for the count too
        assert _wait_for(
            lambda: (
                c.stats["dead"] == len(POISON)
                and n_pending(r) == 0
                and c.stats["processed"] >= total
            )
        ), (c.stats, n_pending(r))
        assert c.stats["processed"] == total
        alerts = AlertStore(r, CFG).query(limit=100)
        assert sorted(a.camera_id for a in alerts) == ["c0", "c3"]
        dead = {f[b"id"].decode(): f for _, f in r.xrange("citysight:detections:dead")}
        assert set(dead) == set(poison_ids)
        assert {int(f[b"deliveries"]) for f in dead.values()} == {3}
        by_name = {poison_ids[i]: f[b"error"].decode() for i, f in dead.items()}
        assert "OverflowError" in by_name["n_inf"]
        assert "extra" in by_name["extra_list"]
        assert "frame_time" in by_name["t_inf"]
        # Alerting goes on after the poison: processed keeps growing.
        publish(r, [frame("c0", 50 + i, False, t0) for i in range(5)])
        assert _wait_for(lambda: c.stats["processed"] == total + 5)
        # Published once a second: wait for a status written after all of that.
        assert _wait_for(lambda: _status(r)["detail"]["processed"] == total + 5), _status(r)
        st = _status(r)
        assert st["state"] == "running", st
        assert st["detail"]["dead"] == len(POISON) and st["detail"]["pending"] == 0
    finally:
        c.stop()


def _status(r: redis.Redis) -> dict:
    raw = r.hget("citysight:components", "rules")
    return json.loads(raw) if raw else {}


def test_failing_entries_make_the_consumer_degraded_until_dead_lettered(
    r: redis.Redis, redis_url: str
) -> None:
    """While an entry fails and waits for its retry the consumer says so (``degraded``)."""
    c = consumer(redis_url, "a", max_deliveries=3, retry_interval_s=0.0)
    t0 = time.time()
    publish(r, [frame("c1", 0, False, t0)])
    bad = r.xadd(S0, {"d": _fields(frame("c1", 1, False, t0), n=float("inf"))}).decode()
    publish(r, [frame("c1", 2, False, t0)])
    c.step()
    state, reason = c.health()
    assert state == "degraded" and "1 entry failing" in reason and "OverflowError" in reason
    assert c.stats["pending"] == 1 and c.stats["lag_ms"] > 0
    drain(c, 5)
    assert [f[b"id"].decode() for _, f in r.xrange("citysight:detections:dead")] == [bad]
    assert c.health() == ("running", "") and c.stats["lag_ms"] == 0


def test_engine_error_outside_its_guard_is_isolated_per_frame(
    r: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rules bug that fails the whole batch costs only the frame that triggers it."""
    c = consumer(redis_url, "a", max_deliveries=2)
    t0 = time.time()
    publish(r, [frame("c0", i, i < 3, t0) for i in range(3)])
    crash = publish(r, [frame("c9", 0, False, t0)])
    publish(r, [frame("c1", i, i < 3, t0) for i in range(3)])
    real = type(c.engine).evaluate

    def evaluate(self, frames):
        if any(f.camera_id == "c9" for f in frames):
            raise ZeroDivisionError("rules bug outside the per-camera guard")
        return real(self, frames)

    monkeypatch.setattr(type(c.engine), "evaluate", evaluate)
    drain(c, 6)
    assert sorted(a.camera_id for a in AlertStore(r, CFG).query()) == ["c0", "c1"]
    dead = r.xrange("citysight:detections:dead")
    assert [f[b"id"].decode() for _, f in dead] == crash and n_pending(r) == 0


def test_a_consumer_that_cannot_write_says_stuck_then_recovers_without_loss(
    r: redis.Redis, redis_url: str
) -> None:
    """Redis refuses every alert write (a corrupted index key): nothing is dead-lettered or
    lost, the consumer publishes ``stuck`` with its reason and growing lag, and resumes once
    the key is repaired."""
    r.set("citysight:alerts:all", "not a sorted set")  # every save now fails: WRONGTYPE
    c = DetectionsConsumer(redis_url, CFG, "s", [0], block_ms=20, stuck_after_s=0.5)
    c.start()
    try:
        publish(r, fire_frames(2, 5, time.time()))
        assert _wait_for(lambda: _status(r).get("state") == "stuck", 15), _status(r)
        st = _status(r)
        assert "no entry acknowledged" in st["detail"]["reason"]
        assert "WRONGTYPE" in st["detail"]["reason"]
        lag1 = st["detail"]["lag_ms"]
        assert st["detail"]["pending"] + st["detail"]["backlog"] == 10 and lag1 > 0
        assert _wait_for(lambda: _status(r)["detail"]["lag_ms"] > lag1 + 300, 10)
        assert c.stats["processed"] == 0 and r.xlen("citysight:detections:dead") == 0
        r.delete("citysight:alerts:all")  # repaired
        assert _wait_for(lambda: _status(r).get("state") == "running", 20), _status(r)
        assert _wait_for(lambda: c.stats["processed"] == 10)
        assert sorted(a.camera_id for a in AlertStore(r, CFG).query()) == ["c0", "c1"]
        assert n_pending(r) == 0 and r.xlen("citysight:detections:dead") == 0
    finally:
        c.stop()


# -- camera lifecycle: camera_offline resolves itself (issue 11) -------------------------


def _status_entry(cam: str, state: CameraState, at: float, reason: str = "") -> dict:
    return {"d": CameraStatus(camera_id=cam, state=state, at=at, reason=reason).to_msgpack()}


def test_camera_offline_resolves_itself_and_reopens_when_offline_again(
    r: redis.Redis, redis_url: str
) -> None:
    c = consumer(redis_url)
    store = AlertStore(r, CFG)
    t0 = time.time()
    r.xadd(CAMERA_STATUS_STREAM, _status_entry("c2", CameraState.OFFLINE, t0, "no frames"))
    drain(c, 2)
    (a,) = store.query()
    assert a.kind == "camera_offline" and a.state == "raised"
    r.xadd(CAMERA_STATUS_STREAM, _status_entry("c2", CameraState.RUNNING, t0 + 5))
    drain(c, 2)
    got = store.get(a.id)
    assert got.state == "resolved" and got.outcome == "recovered" and got.ended_at
    ev = store.events(a.id)[-1]
    assert (ev.actor, ev.from_state, ev.to_state) == ("system", "raised", "resolved")
    feed = [f for _, f in r.xrange("citysight:feed") if f[b"type"] == b"alert_event"]
    assert json.loads(feed[-1][b"d"])["alert"]["state"] == "resolved"
    # Offline again within the cooldown: no second alert, the resolved one is raised again.
    r.xadd(CAMERA_STATUS_STREAM, _status_entry("c2", CameraState.OFFLINE, t0 + 20, "cut"))
    drain(c, 2)
    assert [x.id for x in store.query()] == [a.id]
    got = store.get(a.id)
    assert got.state == "raised" and got.outcome is None
    assert store.events(a.id)[-1].actor == "system"
    assert "offline again" in store.events(a.id)[-1].note
    r.xadd(CAMERA_STATUS_STREAM, _status_entry("c2", CameraState.RUNNING, t0 + 30))
    drain(c, 2)
    assert store.get(a.id).state == "resolved"
    assert [e.to_state for e in store.events(a.id)] == [
        "raised", "resolved", "raised", "resolved"
    ]  # fmt: skip
    # An outage and its end in one batch: raised, then resolved.
    for st, dt in ((CameraState.OFFLINE, 0), (CameraState.RUNNING, 2)):
        r.xadd(CAMERA_STATUS_STREAM, _status_entry("c3", st, t0 + dt))
    drain(c, 2)
    (b,) = [x for x in store.query() if x.camera_id == "c3"]
    assert store.get(b.id).state == "resolved"
    # A human-acknowledged offline alert is still resolved by the system when it recovers.
    r.xadd(CAMERA_STATUS_STREAM, _status_entry("c1", CameraState.OFFLINE, t0))
    drain(c, 2)
    (d,) = [x for x in store.query() if x.camera_id == "c1"]
    store.transition(d.id, "acknowledged", actor="duty-user")
    r.xadd(CAMERA_STATUS_STREAM, _status_entry("c1", CameraState.RUNNING, t0 + 3))
    drain(c, 2)
    assert store.get(d.id).state == "resolved"
    assert n_pending(r, CAMERA_STATUS_STREAM) == 0


def test_camera_offline_resolution_survives_a_consumer_restart(
    r: redis.Redis, redis_url: str
) -> None:
    """The open alert is found in Redis, not in the consumer's memory."""
    c = consumer(redis_url, "a")
    t0 = time.time()
    r.xadd(CAMERA_STATUS_STREAM, _status_entry("c2", CameraState.OFFLINE, t0))
    drain(c, 2)
    (a,) = AlertStore(r, CFG).query()
    c2 = consumer(redis_url, "b")  # a fresh consumer, empty engine state
    r.xadd(CAMERA_STATUS_STREAM, _status_entry("c2", CameraState.RUNNING, t0 + 60))
    drain(c2, 2)
    assert AlertStore(r, CFG).get(a.id).state == "resolved"


@pytest.mark.parametrize(
    "bad",
    [
        b"\xc1",
        msgpack.packb({"camera_id": "c1", "state": "offline", "at": float("inf")}),
        msgpack.packb({"camera_id": "c1", "state": "melted"}),
        msgpack.packb({"camera_id": "", "state": "offline"}),
        msgpack.packb([1]),
    ],
)
def test_malformed_camera_status_is_dead_lettered_and_the_rest_processed(
    r: redis.Redis, redis_url: str, bad: bytes
) -> None:
    c = consumer(redis_url, "a", max_deliveries=2)
    t0 = time.time()
    r.xadd(CAMERA_STATUS_STREAM, _status_entry("c1", CameraState.OFFLINE, t0))
    bid = r.xadd(CAMERA_STATUS_STREAM, {"d": bad}).decode()
    r.xadd(CAMERA_STATUS_STREAM, _status_entry("c2", CameraState.OFFLINE, t0))
    drain(c, 4)
    assert sorted(a.camera_id for a in AlertStore(r, CFG).query()) == ["c1", "c2"]
    dead = r.xrange("citysight:detections:dead")
    assert [(f[b"src"], f[b"id"].decode()) for _, f in dead] == [
        (CAMERA_STATUS_STREAM.encode(), bid)
    ]
    assert n_pending(r, CAMERA_STATUS_STREAM) == 0


def test_one_stuck_consumer_of_several_is_not_masked_by_the_others(
    r: redis.Redis, redis_url: str
) -> None:
    """With two consumers, ``rules`` is the worst of them, never the last one to publish."""
    cfg = CFG.model_copy(
        update={
            "services": CFG.services.model_validate(
                {"streams": {"shards": 2}, "rules": {"consumers": 2}}
            )
        }
    )
    a = DetectionsConsumer(redis_url, cfg, "rules-0", [0], block_ms=5)
    b = DetectionsConsumer(redis_url, cfg, "rules-1", [1], block_ms=5, stuck_after_s=0.2)
    a.setup()
    b.setup()
    a._publish_status()
    assert _status(r)["state"] == "unknown"  # rules-1 has not said anything yet
    b._publish_status()
    assert _status(r)["state"] == "running"
    publish(r, fire_frames(1, 5, time.time()), detections_stream(1))
    r.xreadgroup(GROUP, "rules-1", {detections_stream(1): ">"}, count=100)  # taken, never acked
    time.sleep(0.3)
    b._publish_status()
    a._publish_status()  # the healthy one publishes last
    st = _status(r)
    assert st["state"] == "stuck", st
    assert st["detail"]["consumers"]["rules-0"]["state"] == "running"
    assert "rules-1: stuck" in st["detail"]["reason"]
    assert st["detail"]["pending"] == 5
    drain(b, 3)  # it reads its pending entries: progress
    b._publish_status()
    assert _status(r)["state"] == "running"
    assert _status(r)["detail"]["processed"] == 5


# -- the replicated-alert guarantee (services.redis.alert_replicas, issue 17) ---------------


def test_alert_replicas_acknowledge_only_what_a_replica_holds(tmp_path: Path) -> None:
    """With ``alert_replicas: 1`` detections that raised alerts stay pending until WAIT says a
    replica holds the alerts; once one is attached every alert is there exactly once."""
    primary = Proc(tmp_path / "primary")
    replica = None
    cfg = CFG.model_copy(deep=True)
    cfg.services.redis.alert_replicas = 1
    cfg.services.redis.alert_wait_ms = 50
    url = f"redis://127.0.0.1:{primary.port}/0"
    r = primary.client()
    c = DetectionsConsumer(url, cfg, "w", [0], block_ms=5, retry_interval_s=0.0)
    try:
        c.setup()
        publish(r, fire_frames(3, 6, time.time()))
        with pytest.raises(NotReplicated, match="reached 0 of 1 replica"):
            for _ in range(5):
                c.step()
        assert n_pending(r) == 18 and c.stats["not_replicated"] == 1
        c._pending_due = True  # what run() sets after a failed step
        c.start()  # retries on its own (run() backs off and rereads its pending entries)
        assert _wait_for(lambda: c.stats["not_replicated"] >= 2)
        assert n_pending(r) == 18, "acknowledged without a replica"
        assert c.state == "degraded" and "NotReplicated" in c.last_error
        replica = add_replica(tmp_path / "replica", primary)
        assert _wait_for(lambda: n_pending(r) == 0), (c.stats, c.last_error)
        c.stop()
        on_replica = AlertStore(replica.client(), cfg).query(limit=100)
        assert sorted(a.camera_id for a in on_replica) == ["c0", "c1", "c2"]
        assert c.stats["alerts"] == 3 and c.stats["wait_ms"] >= 0
    finally:
        c.stop()
        for p in (primary, replica):
            if p is not None:
                p.kill()


def test_no_alert_replicas_needs_no_replica(r: redis.Redis, redis_url: str) -> None:
    """The default (``alert_replicas: 0``) never calls WAIT: a lone Redis acknowledges."""
    c = consumer(redis_url)
    publish(r, fire_frames(2, 6, time.time()))
    drain(c, 5)
    assert n_pending(r) == 0 and "wait_ms" not in c.stats
