"""StreamSupervisor on a private local Ray: registry changes and worker failover."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import ray
import redis

from citysight.config import CameraConfig, CameraProfile, StreamsService
from citysight.contracts import FrameResult
from citysight.keys import CAMERAS as CAMERA_REGISTRY_KEY
from citysight.keys import CAMERAS_CHANGED as CAMERA_CHANGED_CHANNEL
from citysight.keys import detections_stream
from streams.supervisor import StreamSupervisorActor
from streams.testing.infer import empty_infer_factory


def _cam(cid: str, url: Path) -> CameraConfig:
    return CameraConfig(
        id=cid,
        url=str(url),
        latitude=0,
        longitude=0,
        detectors=["fire_smoke"],
        profile=CameraProfile(analytics_fps=2, input_width=64, input_height=64, loop=True),
    )


def _eventually(cond: Callable[[], bool], timeout_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s} s")


def _cams_seen_since(r: redis.Redis, since_ms: int) -> set[str]:
    entries = r.xrange(detections_stream(0), min=f"{since_ms}-0")
    return {FrameResult.from_msgpack(f[b"d"]).camera_id for _, f in entries}


@pytest.mark.usefixtures("ray_local")
def test_registry_changes_and_worker_failover(redis_url: str, clips: dict[str, Path]) -> None:
    r = redis.Redis.from_url(redis_url)
    for i in range(4):
        r.hset(CAMERA_REGISTRY_KEY, f"c{i}", _cam(f"c{i}", clips["short"]).model_dump_json())
    cfg = StreamsService(workers=2, shards=1, max_batch=4, push_timeout_ms=20)
    sup = StreamSupervisorActor.remote(
        cfg, redis_url, empty_infer_factory, None, 5.0, 2.0, max_respawns=0
    )
    try:
        assign = ray.get(sup.assignments.remote())
        assert sorted(c for cams in assign.values() for c in cams) == ["c0", "c1", "c2", "c3"]
        _eventually(lambda: _cams_seen_since(r, 0) == {"c0", "c1", "c2", "c3"}, 15)

        # Add through the registry + notification: applied within 2 s.
        r.hset(CAMERA_REGISTRY_KEY, "c4", _cam("c4", clips["short"]).model_dump_json())
        r.publish(CAMERA_CHANGED_CHANNEL, "c4")
        took = _eventually(
            lambda: any("c4" in v for v in ray.get(sup.assignments.remote()).values()), 2.0
        )
        assert took <= 2.0
        _eventually(lambda: "c4" in _cams_seen_since(r, 0), 5)

        # Remove: within 2 s no longer assigned; its frames stop.
        r.hdel(CAMERA_REGISTRY_KEY, "c0")
        r.publish(CAMERA_CHANGED_CHANNEL, "c0")
        _eventually(
            lambda: all("c0" not in v for v in ray.get(sup.assignments.remote()).values()), 2.0
        )
        t_ms = int(time.time() * 1000) + 500
        time.sleep(1.0)
        assert "c0" not in _cams_seen_since(r, t_ms)
        # Deleted (not disabled): its worker drops the health entry and never rewrites it.
        _eventually(lambda: r.hget("citysight:camera-health", "c0") is None, 5.0)
        time.sleep(2.5)
        assert r.hget("citysight:camera-health", "c0") is None
        assert r.hget("citysight:camera-health", "c1") is not None

        # Kill the worker owning most cameras: its cameras move to the survivor.
        assign = ray.get(sup.assignments.remote())
        victim = max(assign, key=lambda k: len(assign[k]))
        ray.kill(ray.get(sup.worker.remote(victim)))
        _eventually(lambda: victim not in ray.get(sup.assignments.remote()), 10)
        survivor_cams = next(iter(ray.get(sup.assignments.remote()).values()))
        assert survivor_cams == ["c1", "c2", "c3", "c4"]
        t_ms = int(time.time() * 1000)
        _eventually(lambda: _cams_seen_since(r, t_ms) == {"c1", "c2", "c3", "c4"}, 10)
    finally:
        ray.get(sup.stop.remote(), timeout=60)
        ray.kill(sup)


@pytest.mark.usefixtures("ray_local")
def test_dead_worker_respawned_under_its_name_with_bounded_respawns(
    redis_url: str, clips: dict[str, Path]
) -> None:
    r = redis.Redis.from_url(redis_url)
    r.delete(CAMERA_REGISTRY_KEY)
    cams = [f"r{i}" for i in range(6)]
    for cid in cams:
        r.hset(CAMERA_REGISTRY_KEY, cid, _cam(cid, clips["short"]).model_dump_json())
    cfg = StreamsService(workers=2, shards=1, max_batch=4, push_timeout_ms=20)
    sup = StreamSupervisorActor.remote(
        cfg, redis_url, empty_infer_factory, None, 30.0, 2.0, max_respawns=1
    )
    try:
        before = ray.get(sup.assignments.remote())
        assert sorted(before) == ["stream-worker-0", "stream-worker-1"]
        victim = max(before, key=lambda k: len(before[k]))
        assert before[victim]
        old = ray.get(sup.worker.remote(victim))
        ray.kill(old)

        # Same name, a new actor, and the ring gives it back exactly its old shard.
        def respawned() -> bool:
            new = ray.get(sup.worker.remote(victim))
            return new is not None and new != old and ray.get(sup.assignments.remote()) == before

        _eventually(respawned, 30)
        stats = ray.get(sup.stats.remote())
        assert stats["respawns"] == 1 and stats["moves"] >= 2 * len(before[victim])
        assert sorted(stats[victim]["cameras"]) == before[victim]
        t_ms = int(time.time() * 1000)
        _eventually(lambda: _cams_seen_since(r, t_ms) == set(cams), 15)

        # Budget spent (1 per window): the next death is not respawned; survivors serve.
        ray.kill(ray.get(sup.worker.remote(victim)))
        _eventually(lambda: victim not in ray.get(sup.assignments.remote()), 15)
        time.sleep(1.5)
        after = ray.get(sup.assignments.remote())
        assert list(after) == [n for n in before if n != victim]
        assert sorted(next(iter(after.values()))) == cams
        assert ray.get(sup.stats.remote())["respawns"] == 1
        assert ray.get(sup.check_workers.remote()) == []
        t_ms = int(time.time() * 1000)
        _eventually(lambda: _cams_seen_since(r, t_ms) == set(cams), 15)
    finally:
        ray.get(sup.stop.remote(), timeout=60)
        ray.kill(sup)
        r.delete(CAMERA_REGISTRY_KEY)
