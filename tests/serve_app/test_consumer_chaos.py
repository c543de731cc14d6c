"""Chaos: kill the RulesConsumer replica (real Ray Serve) while detections flow.

Expected alerts come from an uninterrupted in-process run of the same engine over the same
frames; after the kills Redis must hold exactly those alerts, each once (one ``raised``
event, one feed message).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest
import redis

from citysight.config import CitysightConfig
from citysight.contracts import FrameResult, ObjectClass, shard_of
from citysight.keys import detections_stream
from serve_app.rules import RulesEngine
from serve_app.store import AlertStore

SHARDS = 2
CAMERAS = 20
CFG = CitysightConfig.model_validate({
    "cameras": [{"id": f"cam{i:02d}", "url": f"rtsp://h/{i}", "latitude": 50 + i * 0.01,
                 "longitude": 4.0} for i in range(CAMERAS)],
    "rules": [
        {"id": "fire", "type": "presence", "kind": "fire", "classes": ["fire"],
         "persistence": {"on_frames": 3, "window_frames": 5, "off_frames": 4},
         "cooldown_s": 0},
        {"id": "hot", "type": "plate_hotlist", "kind": "plate", "classes": ["plate"],
         "cooldown_s": 3},
    ],
    "plate_hotlist": [{"plate": "AB1234"}],
    "departments": [{"id": "fire"}, {"id": "police"}],
    "routing": [{"kind": "fire", "department": "fire"}, {"kind": "*", "department": "police"}],
    "services": {"streams": {"shards": SHARDS}},
})  # fmt: skip


def make_frames(n: int, t0: float) -> list[FrameResult]:
    """n frame results round-robin over cameras: fire bursts and hotlist plate reads."""
    out = []
    for k in range(n):
        cam, i = k % CAMERAS, k // CAMERAS
        phase = (i + cam * 7) % 40
        dets: list[tuple[int, str | None]] = []
        if phase < 6:  # a 6-frame fire: one alert per burst
            dets.append((int(ObjectClass.FIRE), None))
        if (i + cam) % 53 == 0:
            dets.append((int(ObjectClass.PLATE), "AB1234" if cam % 2 else "A81Z34"))
        m = len(dets)
        out.append(FrameResult(
            camera_id=f"cam{cam:02d}", frame_time=t0 + i * 0.2, frame_no=i, width=100,
            height=100, boxes=np.tile([[10, 10, 60, 60]], (m, 1)), scores=np.full(m, 0.9),
            class_ids=[c for c, _ in dets],
            extra={"plate_text": [p or "" for _, p in dets]} if m else {},
        ))  # fmt: skip
    return out


def serve_replica_actors() -> list[str]:
    import ray

    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if "SERVE_REPLICA" in a["name"] and "RulesConsumer" in a["name"]
    ]


def run_chaos(redis_url: str, n: int, kills: int, rate_per_s: float) -> None:
    import ray
    from ray import serve

    from serve_app.deployments.rules import RulesConsumer

    r = redis.Redis.from_url(redis_url)
    t0 = time.time()
    frames = make_frames(n, t0)
    expected = {a.id for a in RulesEngine(CFG).evaluate(frames).alerts}
    assert len(expected) > 20

    app = RulesConsumer.options(health_check_period_s=0.5).bind(
        CFG.model_dump(mode="json"),
        redis_url,
        None,
        None,
        {"block_ms": 50, "claim_min_idle_ms": 2000, "replay_s": 600.0},
    )
    serve.run(app, name="rules-chaos", route_prefix=None)

    def produce() -> None:
        pipe = r.pipeline(transaction=False)
        for k, f in enumerate(frames):
            f.published_at = time.time()
            pipe.xadd(detections_stream(shard_of(f.camera_id, SHARDS)), {"d": f.to_msgpack()})
            if k % 50 == 49:
                pipe.execute()
                time.sleep(50 / rate_per_s)
        pipe.execute()

    producer = threading.Thread(target=produce)
    producer.start()
    duration = n / rate_per_s
    killed: set[str] = set()
    for _ in range(kills):
        time.sleep(duration / (kills + 1))
        deadline = time.time() + 30
        names: list[str] = []
        while not names and time.time() < deadline:
            names = [x for x in serve_replica_actors() if x not in killed]
            time.sleep(0.2)
        assert names, "Serve did not replace the killed replica"
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        killed.add(names[0])
    producer.join()

    def done() -> bool:
        for s in range(SHARDS):
            st = detections_stream(s)
            groups = {g["name"].decode(): g for g in r.xinfo_groups(st)}
            g = groups.get("rules")
            last = r.xrevrange(st, count=1)
            if g is None or g["pending"] or not last or g["last-delivered-id"] != last[0][0]:
                return False
        return True

    deadline = time.time() + 120
    while not done() and time.time() < deadline:
        time.sleep(0.5)
    assert done(), "consumer did not catch up"
    serve.delete("rules-chaos")
    assert len(killed) == kills

    store = AlertStore(r, CFG)
    got = [a.id for a in store.query(limit=100_000)]
    feed = Counter(
        f[b"d"] and f[b"camera_id"] and _alert_id(f)
        for _, f in r.xrange("citysight:feed")
        if f[b"type"] == b"alert"
    )
    lost = expected - set(got)
    extra = set(got) - expected
    dupes = [k for k, v in feed.items() if v > 1]
    assert (lost, extra, dupes) == (set(), set(), [])
    assert len(got) == len(set(got)) == len(expected)
    assert all(len(store.events(a)) == 1 for a in got)


def _alert_id(fields: dict) -> str:
    import json

    return json.loads(fields[b"d"])["id"]


def test_one_kill_2000_detections(redis_url: str, ray_local: None) -> None:
    run_chaos(redis_url, 2000, kills=1, rate_per_s=400)


@pytest.mark.slow
@pytest.mark.chaos
def test_repeated_kills_10000_detections(redis_url: str, ray_local: None) -> None:
    run_chaos(redis_url, 10_000, kills=4, rate_per_s=500)
