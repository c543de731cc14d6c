"""StreamWorker end to end: real files -> decode -> injected infer -> real Redis streams."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from citysight.config import CameraConfig, CameraProfile, StreamsService
from citysight.contracts import CameraState, CameraStatus, FrameResult, shard_of
from citysight.keys import CAMERA_HEALTH as CAMERA_HEALTH_KEY
from citysight.keys import CAMERA_STATUS_STREAM, detections_stream
from streams.testing.infer import empty_infer_factory, red_blob_infer_factory
from streams.worker import StreamWorker


def _cam(cid: str, url: Path, **profile: object) -> CameraConfig:
    return CameraConfig(
        id=cid,
        url=str(url),
        latitude=0,
        longitude=0,
        detectors=["fire_smoke"],
        profile=CameraProfile(input_width=160, input_height=120, loop=True, **profile),  # type: ignore[arg-type]
    )


def _wait(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _results(r: redis.Redis, shards: int) -> list[FrameResult]:
    out = []
    for s in range(shards):
        for _id, fields in r.xrange(detections_stream(s)):
            out.append(FrameResult.from_msgpack(fields[b"d"]))
    return out


def test_worker_publishes_detections_snapshots_and_health(
    redis_url: str, clips: dict[str, Path]
) -> None:
    cfg = StreamsService(shards=2, max_batch=4, push_timeout_ms=20, queue_frames=2)
    cams = [_cam("red-1", clips["red"], analytics_fps=5), _cam("plain-1", clips["short"])]
    r = redis.Redis.from_url(redis_url)
    before = set(threading.enumerate())
    w = StreamWorker(cams, cfg, redis_url, red_blob_infer_factory)
    try:
        assert _wait(lambda: len({x.camera_id for x in _results(r, 2)}) == 2)
        assert _wait(lambda: r.hlen(CAMERA_HEALTH_KEY) == 2)
        time.sleep(1.2)
    finally:
        w.stop()
    assert set(threading.enumerate()) - before == set()
    res = _results(r, 2)
    red = [x for x in res if x.camera_id == "red-1"]
    plain = [x for x in res if x.camera_id == "plain-1"]
    assert red and plain
    # Each camera lands on its own shard's stream.
    for cid in ("red-1", "plain-1"):
        stream = detections_stream(shard_of(cid, 2))
        assert any(FrameResult.from_msgpack(f[b"d"]).camera_id == cid for _, f in r.xrange(stream))
    assert all(len(x) == 1 and x.width == 160 and x.height == 120 for x in red)
    assert all(len(x) == 0 for x in plain)
    assert all(x.published_at >= x.frame_time > 0 for x in res)
    snaps = [x.snapshot_key for x in red if x.snapshot_key]
    assert snaps and all(k.startswith("citysight:snap:red-1:") for k in snaps)
    assert r.get(snaps[0])[:2] == b"\xff\xd8"  # JPEG
    assert 0 < r.ttl(snaps[0]) <= 600
    # At most about one snapshot per second per camera.
    times = sorted(x.frame_time for x in red if x.snapshot_key)
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(times))
    assert not [x for x in plain if x.snapshot_key]
    # State changes on the status stream; latest status with metrics in the health hash.
    states = [CameraStatus.from_msgpack(f[b"d"]) for _, f in r.xrange(CAMERA_STATUS_STREAM)]
    assert (
        "red-1",
        CameraState.RUNNING,
    ) in {(s.camera_id, s.state) for s in states}
    health = json.loads(r.hget(CAMERA_HEALTH_KEY, "red-1"))
    assert health["state"] == "stopped"
    assert health["metrics"]["frames_out"] > 0
    assert "drops" in health["metrics"]


def test_add_update_remove_camera_at_run_time(redis_url: str, clips: dict[str, Path]) -> None:
    cfg = StreamsService(shards=1, max_batch=8, push_timeout_ms=20)
    r = redis.Redis.from_url(redis_url)
    w = StreamWorker([], cfg, redis_url, empty_infer_factory)
    try:
        assert w.camera_ids() == []
        w.add_camera(_cam("a", clips["short"], analytics_fps=10))
        w.add_camera(_cam("b", clips["short"], analytics_fps=10))
        assert _wait(lambda: {x.camera_id for x in _results(r, 1)} == {"a", "b"}, 5)
        w.remove_camera("a")
        assert w.camera_ids() == ["b"]
        n_a = sum(1 for x in _results(r, 1) if x.camera_id == "a")
        time.sleep(0.6)
        assert sum(1 for x in _results(r, 1) if x.camera_id == "a") <= n_a + 1
        # Update: new profile takes effect (keyframe-only, 1 keyframe per second).
        w.update_camera(_cam("b", clips["short"], analytics_fps=10, keyframe_only=True))
        assert _wait(lambda: w.stats()["cameras"]["b"]["frames_out"] >= 1, 5)
        st = w.stats()
        assert set(st["cameras"]) == {"b"}
        assert st["published"] > 0 and st["infer_errors"] == 0
        assert not w.remove_camera("nope")
    finally:
        w.stop()
    health = r.hgetall(CAMERA_HEALTH_KEY)
    assert json.loads(health[b"a"])["state"] == "stopped"


def test_forgotten_camera_health_never_comes_back(redis_url: str, clips: dict[str, Path]) -> None:
    """A deleted camera (``forget_camera``): its stopping reader's last status and the
    periodic refresh must not re-add the health entry the API removed (issue 11)."""
    cfg = StreamsService(shards=1, max_batch=8, push_timeout_ms=20)
    r = redis.Redis.from_url(redis_url)
    w = StreamWorker([], cfg, redis_url, empty_infer_factory)
    try:
        w.add_camera(_cam("gone", clips["short"], analytics_fps=10))
        w.add_camera(_cam("kept", clips["short"], analytics_fps=10))
        assert _wait(lambda: r.hlen(CAMERA_HEALTH_KEY) == 2, 10)
        r.hdel(CAMERA_HEALTH_KEY, "gone")  # what DELETE /api/cameras/gone does
        assert w.forget_camera("gone") and w.camera_ids() == ["kept"]
        time.sleep(2.5)  # past the worker's health refresh period (2 s)
        assert r.hget(CAMERA_HEALTH_KEY, "gone") is None
        assert r.hget(CAMERA_HEALTH_KEY, "kept") is not None
        w.add_camera(_cam("gone", clips["short"], analytics_fps=10))  # created again
        assert _wait(lambda: r.hget(CAMERA_HEALTH_KEY, "gone") is not None, 10)
    finally:
        w.stop()


def test_failing_infer_is_counted_and_loop_survives(redis_url: str, clips: dict[str, Path]) -> None:
    calls = {"n": 0}

    def flaky_factory() -> Callable:
        def infer(batch):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] % 2:
                raise RuntimeError("model hiccup")
            return empty_infer_factory()(batch)

        return infer

    cfg = StreamsService(shards=1)
    w = StreamWorker([_cam("a", clips["short"], analytics_fps=10)], cfg, redis_url, flaky_factory)
    try:
        assert _wait(lambda: w.stats()["published"] > 0 and w.stats()["infer_errors"] > 0)
    finally:
        w.stop()


@pytest.mark.parametrize("n_cams", [4])
def test_slow_inference_drops_oldest_instead_of_building_latency(
    redis_url: str, clips: dict[str, Path], n_cams: int
) -> None:
    def slow_factory() -> Callable:
        base = empty_infer_factory()

        def infer(batch):  # type: ignore[no-untyped-def]
            time.sleep(0.3)
            return base(batch)

        return infer

    cfg = StreamsService(shards=1, max_batch=2, queue_frames=1)
    cams = [_cam(f"c{i}", clips["short"], analytics_fps=25) for i in range(n_cams)]
    r = redis.Redis.from_url(redis_url)
    w = StreamWorker(cams, cfg, redis_url, slow_factory)
    try:
        time.sleep(2.0)
        stats = w.stats()
    finally:
        w.stop()
    drops = sum(c["drops"] for c in stats["cameras"].values())
    assert drops > 0
    # Published frames are fresh: the age at publish stays bounded by one batch cycle.
    res = _results(r, 1)
    ages = [x.published_at - x.frame_time for x in res[len(res) // 2 :]]
    assert ages and max(ages) < 1.5


def _statuses(r: redis.Redis, cid: str) -> list[CameraStatus]:
    rows = r.xrange(CAMERA_STATUS_STREAM)
    sts = [CameraStatus.from_msgpack(f[b"d"]) for _, f in rows]
    return [s for s in sts if s.camera_id == cid]


def _flips(r: redis.Redis, cid: str) -> list[bool]:
    """The camera's analysed values on the status stream, repeats collapsed."""
    vals = [s.analysed for s in _statuses(r, cid) if s.analysed is not None]
    return [v for i, v in enumerate(vals) if i == 0 or vals[i - 1] != v]


def _health(r: redis.Redis, cid: str) -> dict:
    raw = r.hget(CAMERA_HEALTH_KEY, cid)
    return json.loads(raw) if raw else {}


def test_camera_not_analysed_while_its_reader_runs_and_again_when_it_resumes(
    redis_url: str, clips: dict[str, Path]
) -> None:
    """Inference that returns nothing (what a down Triton client does): the camera keeps
    decoding, is reported ``analysed=False`` with the time analysis stopped, and ``True``
    once frames are analysed again; ``frames_analysed`` counts what was analysed."""
    dropping = threading.Event()

    def switchable_factory() -> Callable:
        base = empty_infer_factory()

        def infer(batch):  # type: ignore[no-untyped-def]
            return [] if dropping.is_set() else base(batch)

        return infer

    cfg = StreamsService(shards=1, analysis_timeout_s=1)
    r = redis.Redis.from_url(redis_url)
    w = StreamWorker(
        [_cam("an", clips["short"], analytics_fps=10)], cfg, redis_url, switchable_factory
    )
    try:
        assert _wait(lambda: _health(r, "an").get("analysed") is True, 10)
        assert _flips(r, "an") == [True]
        dropping.set()
        t_drop = time.time()
        assert _wait(lambda: _health(r, "an").get("analysed") is False, 6)
        h = _health(r, "an")
        assert h["state"] == "running"  # the reader still decodes
        assert t_drop - 0.5 <= h["analysis_stopped_at"] <= t_drop + 1.5
        stopped = [s for s in _statuses(r, "an") if s.analysed is False]
        assert len(stopped) == 1 and stopped[0].state is CameraState.RUNNING
        assert stopped[0].analysis_stopped_at == h["analysis_stopped_at"]
        frozen = w.stats()["cameras"]["an"]["frames_analysed"]
        frames_out = w.stats()["cameras"]["an"]["frames_out"]
        time.sleep(1.0)
        assert w.stats()["cameras"]["an"]["frames_analysed"] == frozen
        assert w.stats()["cameras"]["an"]["frames_out"] > frames_out
        dropping.clear()
        assert _wait(lambda: _health(r, "an").get("analysed") is True, 6)
        assert _health(r, "an")["analysis_stopped_at"] is None
        assert _flips(r, "an") == [True, False, True]
        assert w.stats()["cameras"]["an"]["frames_analysed"] > frozen
    finally:
        w.stop()


def test_flapping_analysis_stays_one_outage(redis_url: str, clips: dict[str, Path]) -> None:
    """An overloaded node that analyses a frame now and then (seen in the 30-minute soak:
    118 analytics_down alerts raised and resolved) stays one outage: analysis must hold for
    ``analysis_timeout_s`` before the camera is reported analysed again, and the outage keeps
    the time it started."""
    dropping = threading.Event()

    def switchable_factory() -> Callable:
        base = empty_infer_factory()

        def infer(batch):  # type: ignore[no-untyped-def]
            return [] if dropping.is_set() else base(batch)

        return infer

    cfg = StreamsService(shards=1, analysis_timeout_s=2)
    r = redis.Redis.from_url(redis_url)
    w = StreamWorker(
        [_cam("fl", clips["short"], analytics_fps=10)], cfg, redis_url, switchable_factory
    )
    try:
        assert _wait(lambda: _health(r, "fl").get("analysed") is True, 10)
        dropping.set()
        assert _wait(lambda: _health(r, "fl").get("analysed") is False, 8)
        stopped_at = _health(r, "fl")["analysis_stopped_at"]
        for _ in range(2):  # a few frames analysed, then nothing again: still one outage
            dropping.clear()
            time.sleep(0.6)
            dropping.set()
            time.sleep(2.5)
        assert _flips(r, "fl") == [True, False]
        assert _health(r, "fl")["analysis_stopped_at"] == stopped_at
        dropping.clear()
        t_clear = time.monotonic()
        assert _wait(lambda: _health(r, "fl").get("analysed") is True, 10)
        assert time.monotonic() - t_clear >= 1.9  # held for the timeout before resuming
        assert _flips(r, "fl") == [True, False, True]
    finally:
        w.stop()
        r.close()


def test_stop_closes_the_inference_client(redis_url: str, clips: dict[str, Path]) -> None:
    """A stopped worker releases its client (Triton shared-memory regions, connections)."""
    closed = threading.Event()

    class Infer:
        def __call__(self, batch):  # type: ignore[no-untyped-def]
            return empty_infer_factory()(batch)

        def close(self) -> None:
            closed.set()

    w = StreamWorker([_cam("cl", clips["short"])], StreamsService(shards=1), redis_url, Infer)
    assert not closed.is_set()
    w.stop()
    assert closed.is_set()


def test_camera_fire_smoke_settings_reach_the_inference_batches(
    redis_url: str, clips: dict[str, Path]
) -> None:
    """A camera's fire_smoke sensitivity goes with its frames (FrameBatch.options); a
    default camera sends none; an updated camera sends its new settings."""
    seen: list[tuple[str, str]] = []

    def recording_factory() -> Callable:
        inner = empty_infer_factory()

        def infer(batch):  # type: ignore[no-untyped-def]
            for i, cam in enumerate(batch.camera_ids):
                seen.append((cam, batch.options_of("fire_smoke", [i])[0]))
            return inner(batch)

        return infer

    plain_hi = _cam("hi", clips["short"], analytics_fps=10)
    high = CameraConfig.model_validate(
        {**plain_hi.model_dump(), "fire_smoke": {"sensitivity": "high"}}
    )
    plain = _cam("plain", clips["short"], analytics_fps=10)
    w = StreamWorker([high, plain], StreamsService(shards=1), redis_url, recording_factory)
    try:
        assert _wait(lambda: {c for c, _ in seen} == {"hi", "plain"})
        assert {o for c, o in seen if c == "hi"} == {'{"sensitivity": "high"}'}
        assert {o for c, o in seen if c == "plain"} == {""}
        low = CameraConfig.model_validate(
            {**plain.model_dump(), "fire_smoke": {"sensitivity": "low"}}
        )
        w.update_camera(low)
        assert _wait(lambda: ("plain", '{"sensitivity": "low"}') in seen)
    finally:
        w.stop()
