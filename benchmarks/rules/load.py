"""Simulated cameras: publish FrameResults onto the detections streams at a fixed rate."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import numpy as np
import redis

from citysight.contracts import FrameResult, ObjectClass, shard_of
from citysight.keys import detections_stream

BURST_PERIOD = 200  # frames between fire bursts of a "burning" camera
BURST_LEN = 6


def camera_ids(n: int) -> list[str]:
    """Ids of ``n`` simulated cameras."""
    return [f"sim{i:05d}" for i in range(n)]


def make_frame(
    cam: int, cid: str, i: int, t: float, detection_ratio: float, rng: np.random.Generator
) -> FrameResult:
    """One frame: empty mostly; some persons; fire bursts on every 50th camera."""
    cls: list[int] = []
    if cam % 50 == 0 and (i % BURST_PERIOD) < BURST_LEN:
        cls.append(int(ObjectClass.FIRE))
    if rng.random() < detection_ratio:
        cls.append(int(ObjectClass.PERSON))
    m = len(cls)
    return FrameResult(
        camera_id=cid, frame_time=t, frame_no=i, width=960, height=540,
        boxes=np.tile(np.array([[100, 100, 200, 300]], np.float32), (m, 1)),
        scores=np.full(m, 0.9, np.float32), class_ids=np.array(cls, np.int32),
        track_ids=np.arange(m, dtype=np.int64), published_at=time.time(),
    )  # fmt: skip


def encode_frame(
    cam: int, cid: str, i: int, t: float, detection_ratio: float, rng: np.random.Generator
) -> bytes:
    """``make_frame(...).to_msgpack()``, with a cheap path for empty frames (most of them)."""
    burning = cam % 50 == 0 and (i % BURST_PERIOD) < BURST_LEN
    if burning or rng.random() < detection_ratio * 1.0:
        return make_frame(cam, cid, i, t, detection_ratio if not burning else 0.0, rng).to_msgpack()
    packed: bytes = msgpack.packb(
        {
            "v": 1,
            "cam": cid,
            "t": t,
            "n": i,
            "w": 960,
            "h": 540,
            "boxes": b"",
            "scores": b"",
            "cls": b"",
            "trk": b"",
            "extra": {},
            "pub": time.time(),
            "snap": "",
        },
        use_bin_type=True,
    )
    return packed


def produce(
    redis_url: str,
    cameras: int,
    fps: float,
    duration_s: float,
    shards: int,
    detection_ratio: float,
    result: Any,
) -> None:
    """Publish ``cameras × fps`` frame results per second for ``duration_s`` (own process).

    Writes ``(produced, first_publish_time, last_publish_time)`` into ``result`` (a
    multiprocessing list).
    """
    r = redis.Redis.from_url(redis_url)
    ids = camera_ids(cameras)
    streams = [detections_stream(shard_of(c, shards)) for c in ids]
    rng = np.random.default_rng(0)
    rate = cameras * fps
    tick = 0.02
    start = time.time()
    produced = 0
    frame_no = 0
    carry = 0.0
    while (now := time.time()) - start < duration_s:
        due = rate * (now - start) - produced
        n = int(due + carry)
        carry = (due + carry) - n
        pipe = r.pipeline(transaction=False)
        for _ in range(n):
            cam = produced % cameras
            i = produced // cameras
            frame_no = max(frame_no, i)
            blob = encode_frame(cam, ids[cam], i, start + i / fps, detection_ratio, rng)
            pipe.xadd(streams[cam], {"d": blob})
            produced += 1
            if produced % 1000 == 0:
                pipe.execute()
        pipe.execute()
        time.sleep(max(0.0, tick - (time.time() - now)))
    result.extend([produced, start, time.time()])
