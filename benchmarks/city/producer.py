"""Simulated cameras: a process that writes FrameResults for a slice of cameras at a set rate.

Each producer owns cameras ``start, start + step, ...`` and sends each camera's frame once
per ``1 / fps`` seconds, spread over ticks so the load is smooth, as pipelined ``XADD``\\s to
``citysight:detections:{shard}``. ``published_at`` (and ``frame_time``) is the wall time the
pipeline is built, so an alert's ``detected_at`` is the publish time of its triggering frame.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import redis

from benchmarks.city.scenario import HOTLIST, Mix, camera_id, camera_kind
from citysight.contracts import SCHEMA_VERSION, FrameResult, ObjectClass, shard_of
from citysight.keys import detections_stream

WIDTH, HEIGHT = 1280, 720
TICK_S = 0.05
EPISODES = ("fire", "smoke", "face", "hotlist", "vending")
_EPISODE_CAMERAS = {
    "fire": None,
    "smoke": None,
    "face": "building",
    "hotlist": "traffic",
    "vending": "street",
}


def empty_frame_msgpack(cam: str, t: float, frame_no: int) -> bytes:
    """Byte-identical to ``FrameResult(cam, t, frame_no, WIDTH, HEIGHT, published_at=t)
    .to_msgpack()`` for a frame without detections, ~10x cheaper (no numpy arrays)."""
    packed: bytes = msgpack.packb(
        {
            "v": SCHEMA_VERSION,
            "cam": cam,
            "t": t,
            "n": frame_no,
            "w": WIDTH,
            "h": HEIGHT,
            "boxes": b"",
            "scores": b"",
            "cls": b"",
            "trk": b"",
            "extra": {},
            "pub": t,
            "snap": "",
        },
        use_bin_type=True,
    )
    return packed


def _box(rng: random.Random, *, lower_half: bool = False) -> list[float]:
    w, h = rng.uniform(60, 200), rng.uniform(60, 200)
    x = rng.uniform(0, WIDTH - w)
    y = rng.uniform(HEIGHT / 2 + 10 if lower_half else 0, HEIGHT - h)
    return [x, y, x + w, y + h]


@dataclass
class ProducerSpec:
    """What one producer process simulates.

    Attributes:
        redis_url: Redis of the system under test.
        cameras: Total simulated cameras of this level.
        start: First camera index of this producer.
        step: Stride over camera indices (the number of producers).
        fps: Frame results per camera per second.
        shards: Detections streams.
        duration_s: How long to produce.
        mix: Detection mix.
        seed: Random seed.
        batch: XADDs per pipeline round trip.
    """

    redis_url: str
    cameras: int
    start: int
    step: int
    fps: float
    shards: int
    duration_s: float
    mix: Mix = field(default_factory=Mix)
    seed: int = 0
    batch: int = 500


class CameraSim:
    """Per-camera state (frame counter, running episode) of one producer's cameras."""

    def __init__(self, spec: ProducerSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.idx = list(range(spec.start, spec.cameras, spec.step))
        self.ids = [camera_id(i) for i in self.idx]
        self.kinds = [camera_kind(i) for i in self.idx]
        self.streams = [detections_stream(shard_of(c, spec.shards)) for c in self.ids]
        self.frame_no = [0] * len(self.idx)
        self.episode: list[tuple[str, int, int] | None] = [None] * len(self.idx)
        self.episodes_started = dict.fromkeys(EPISODES, 0)
        self._track = 1
        m = spec.mix
        per_frame = 1.0 / 3600.0 / spec.fps
        self.start_p = {
            "fire": m.fire_per_cam_h * per_frame,
            "smoke": m.smoke_per_cam_h * per_frame,
            "face": m.face_per_cam_h * per_frame,
            "hotlist": m.hotlist_per_cam_h * per_frame,
            "vending": m.vending_per_cam_h * per_frame,
        }
        self.episode_frames = max(1, round(m.episode_s * spec.fps))

    def _maybe_start(self, j: int) -> None:
        r = self.rng.random()
        acc = 0.0
        for name in EPISODES:
            need = _EPISODE_CAMERAS[name]
            if need is not None and self.kinds[j] != need:
                continue
            acc += self.start_p[name]
            if r < acc:
                self._track += 1
                self.episode[j] = (name, self.episode_frames, self._track)
                self.episodes_started[name] += 1
                return

    def frame(self, j: int, t: float) -> bytes:
        """Serialised FrameResult of camera ``j``'s next frame at wall time ``t``."""
        n = self.frame_no[j]
        self.frame_no[j] = n + 1
        cam = self.ids[j]
        if self.episode[j] is None:
            self._maybe_start(j)
        boxes: list[list[float]] = []
        scores: list[float] = []
        classes: list[int] = []
        tracks: list[int] = []
        plates: list[str] = []
        ep = self.episode[j]
        if ep is not None:
            name, left, track = ep
            self.episode[j] = (name, left - 1, track) if left > 1 else None
            cls = {
                "fire": ObjectClass.FIRE,
                "smoke": ObjectClass.SMOKE,
                "face": ObjectClass.FACE,
                "hotlist": ObjectClass.PLATE,
                "vending": ObjectClass.STALL,
            }[name]
            boxes.append(
                [400.0, 420.0, 600.0, 620.0] if name == "vending" else [500.0, 200.0, 700.0, 400.0]
            )
            scores.append(0.9)
            classes.append(int(cls))
            tracks.append(track)
            plates.append(HOTLIST[track % len(HOTLIST)] if name == "hotlist" else "")
        m = self.spec.mix
        rng = self.rng
        kind = self.kinds[j]
        if kind == "traffic" and rng.random() < m.plate_frame_rate:
            boxes.append(_box(rng))
            scores.append(0.85)
            classes.append(int(ObjectClass.PLATE))
            tracks.append(-1)
            plates.append(f"琼{chr(65 + rng.randrange(26))}{rng.randrange(10000, 99999)}")
        if kind != "building" and rng.random() < m.face_frame_rate:
            boxes.append(_box(rng))
            scores.append(0.8)
            classes.append(int(ObjectClass.FACE))
            tracks.append(-1)
            plates.append("")
        if rng.random() < m.person_frame_rate:
            boxes.append(_box(rng))
            scores.append(0.7)
            classes.append(int(ObjectClass.PERSON if rng.random() < 0.5 else ObjectClass.VEHICLE))
            tracks.append(-1)
            plates.append("")
        if rng.random() < m.low_score_fire_rate:
            boxes.append(_box(rng))
            scores.append(0.3)
            classes.append(int(ObjectClass.FIRE))
            tracks.append(-1)
            plates.append("")
        if not scores:
            return empty_frame_msgpack(cam, t, n)
        extra: dict[str, list[Any]] = {}
        if any(plates):
            extra = {"plate_text": plates, "plate_score": [0.9 if p else 0.0 for p in plates]}
        return FrameResult(
            camera_id=cam,
            frame_time=t,
            frame_no=n,
            width=WIDTH,
            height=HEIGHT,
            boxes=np.asarray(boxes, np.float32),
            scores=np.asarray(scores, np.float32),
            class_ids=np.asarray(classes, np.int32),
            track_ids=np.asarray(tracks, np.int64),
            extra=extra,
            published_at=t,
        ).to_msgpack()


def run_producer(spec: ProducerSpec, sent: Any, stop: Any, results: Any) -> None:
    """Process body: produce until ``duration_s`` passes or ``stop`` is set.

    Args:
        spec: What to simulate.
        sent: ``multiprocessing.Value('q')`` incremented with frames sent.
        stop: ``multiprocessing.Event`` to stop early.
        results: ``multiprocessing.Queue`` receiving a summary dict at the end.
    """
    sim = CameraSim(spec)
    r = redis.Redis.from_url(spec.redis_url, socket_timeout=30)
    n_buckets = max(1, round(1.0 / spec.fps / TICK_S))
    buckets = [list(range(b, len(sim.idx), n_buckets)) for b in range(n_buckets)]
    tick_s = 1.0 / spec.fps / n_buckets
    t0 = time.monotonic()
    k = 0
    total = 0
    late_ticks = 0
    try:
        while not stop.is_set():
            due = t0 + k * tick_s
            if due - t0 >= spec.duration_s:
                break
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            elif now - due > tick_s:
                late_ticks += 1
            bucket = buckets[k % n_buckets]
            k += 1
            for off in range(0, len(bucket), spec.batch):
                part = bucket[off : off + spec.batch]
                pipe = r.pipeline(transaction=False)
                t = time.time()
                for j in part:
                    pipe.xadd(sim.streams[j], {"d": sim.frame(j, t)})
                pipe.execute()
                total += len(part)
                with sent.get_lock():
                    sent.value += len(part)
    finally:
        r.close()
        results.put(
            {
                "start": spec.start,
                "frames": total,
                "elapsed_s": round(time.monotonic() - t0, 3),
                "late_ticks": late_ticks,
                "ticks": k,
                "episodes": sim.episodes_started,
            }
        )


def start_producers(
    ctx: Any, specs: list[ProducerSpec]
) -> tuple[list[mp.process.BaseProcess], Any, Any, Any]:
    """Start one process per spec (``ctx`` is a multiprocessing context).

    Returns:
        ``(processes, sent counter, stop event, results queue)``.
    """
    sent = ctx.Value("q", 0)
    stop = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=run_producer, args=(s, sent, stop, results), name=f"city-producer-{s.start}"
        )
        for s in specs
    ]
    for p in procs:
        p.start()
    return procs, sent, stop, results
