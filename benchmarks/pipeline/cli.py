"""``citysight bench pipeline``: real video through decode, inference and rules on this machine.

For each analytics profile (``1fps``, ``2fps``, ``5fps``, ``keyframe``) one camera's clip is
decoded with PyAV, sampled, converted and resized, run through every detector in-process
(``inference.client.create_client``), tracked, serialised and published to a real
(embedded) Redis stream, and evaluated by the rules engine. Each stage's CPU time
(``time.process_time``, so detector threads count) and wall time are recorded per frame;
**camera streams per core** is one CPU-second divided by the CPU-seconds one camera costs
per second of video (all decoded frames plus every analysed frame).

Example::

    citysight bench pipeline --seconds 10
    citysight bench pipeline --video ../shared/data/videos/street-1080p.mp4 --profiles 1fps,keyframe
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from benchmarks.common.stats import latency_summary

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "street-720p.mp4"
PROFILES = {"1fps": 1.0, "2fps": 2.0, "5fps": 5.0, "keyframe": 0.0}
DETECTORS = ("face", "plate", "fire_smoke", "vending")


@dataclass
class StageTimes:
    """Accumulated CPU and wall milliseconds per stage, plus per-call samples."""

    def __post_init__(self) -> None:
        self.cpu_ms: dict[str, float] = defaultdict(float)
        self.wall_ms: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.samples: dict[str, list[float]] = defaultdict(list)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one call of ``name``."""
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            c = (time.process_time() - c0) * 1000
            w = (time.perf_counter() - w0) * 1000
            self.cpu_ms[name] += c
            self.wall_ms[name] += w
            self.calls[name] += 1
            self.samples[name].append(w)


def default_models_dir() -> Path:
    """``model_repo/files`` when it holds models, otherwise ``../shared/models``."""
    repo = ROOT / "model_repo" / "files"
    if repo.is_dir() and any(repo.glob("*.onnx")):
        return repo
    return ROOT.parent / "shared" / "models"


def _config(camera_id: str, detectors: list[str], width: int, height: int) -> Any:
    from benchmarks.city.scenario import city_config_dict
    from citysight.config import parse_config

    doc = city_config_dict(1, http_port=8000, shards=1)
    cam = doc["cameras"][0]
    cam.update(
        {
            "id": camera_id,
            "detectors": detectors,
            "profile": {"analytics_fps": 1.0, "input_width": width, "input_height": height},
            "zones": [
                {
                    "id": "all",
                    "type": "restricted",
                    "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                },
                {
                    "id": "pavement",
                    "type": "no_vending",
                    "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]],
                },
            ],
        }
    )
    return parse_config(doc, "<pipeline bench>")


def run_profile(
    video: Path,
    profile: str,
    seconds: float,
    client: Any,
    detectors: list[str],
    size: tuple[int, int],
    redis_client: Any,
) -> dict[str, Any]:
    """Run one profile over the first ``seconds`` of ``video``; return its breakdown."""
    import av
    import cv2

    from citysight.contracts import FrameBatch, FrameResult
    from citysight.keys import detections_stream
    from serve_app.rules.engine import RulesEngine

    fps = PROFILES[profile]
    cam = f"bench-{profile}"
    engine = RulesEngine(_config(cam, detectors, *size))
    st = StageTimes()
    stream_key = detections_stream(0)
    decoded = analysed = detections = alerts = 0
    next_t = 0.0
    src_fps = 0.0
    with av.open(str(video)) as container:
        vs = container.streams.video[0]
        vs.thread_type = "NONE"  # one core per camera: the quantity being measured
        src_fps = float(vs.average_rate or 25)
        if profile == "keyframe":
            vs.codec_context.skip_frame = "NONKEY"
        time_base = vs.time_base
        if time_base is None:
            raise ValueError(f"{video}: the video stream has no time base")
        frames = container.decode(vs)
        while True:
            with st.stage("decode"):
                frame = next(frames, None)
            if frame is None:
                break
            t_video = float(frame.pts * time_base) if frame.pts is not None else 0.0
            if t_video >= seconds:
                break
            decoded += 1
            if fps and t_video + 1e-6 < next_t:
                continue
            next_t = t_video + (1.0 / fps if fps else 0.0)
            analysed += 1
            with st.stage("convert"):
                # bgr24 decodes to uint8 (H, W, 3); resizing keeps the dtype.
                img = cast("npt.NDArray[np.uint8]", frame.to_ndarray(format="bgr24"))
            with st.stage("resize"):
                if (img.shape[1], img.shape[0]) != size:
                    img = cast(
                        "npt.NDArray[np.uint8]",
                        cv2.resize(img, size, interpolation=cv2.INTER_LINEAR),
                    )
            now = time.time()
            parts = []
            for det in detectors:
                batch = FrameBatch([img], [cam], [analysed], [now], [frozenset({det})])
                with st.stage(f"infer:{det}"):
                    parts.extend(client.infer(batch))
            with st.stage("merge"):
                fr = FrameResult.concat(parts) if len(parts) > 1 else parts[0]
            detections += len(fr)
            with st.stage("publish"):
                fr.published_at = time.time()
                redis_client.xadd(stream_key, {"d": fr.to_msgpack()})
            with st.stage("rules"):
                out = engine.evaluate([fr])
            alerts += len(getattr(out, "alerts", []) or [])
    video_s = min(seconds, decoded / src_fps if profile != "keyframe" else seconds)
    per_stage = {}
    for name in st.calls:
        per_stage[name] = {
            "calls": st.calls[name],
            "cpu_ms_per_call": round(st.cpu_ms[name] / st.calls[name], 3),
            "wall_ms_per_call": round(st.wall_ms[name] / st.calls[name], 3),
            "wall_ms_p99": latency_summary(st.samples[name])["p99"],
            "cpu_ms_per_video_s": round(st.cpu_ms[name] / max(video_s, 1e-9), 2),
        }
    cpu_per_video_s = sum(st.cpu_ms.values()) / max(video_s, 1e-9)
    wall_per_video_s = sum(st.wall_ms.values()) / max(video_s, 1e-9)
    return {
        "profile": profile,
        "analytics_fps": fps or "keyframes",
        "video_s": round(video_s, 2),
        "frames_decoded": decoded,
        "frames_analysed": analysed,
        "detections": detections,
        "alerts": alerts,
        "analysed_per_video_s": round(analysed / max(video_s, 1e-9), 3),
        "cpu_ms_per_video_s": round(cpu_per_video_s, 1),
        "wall_ms_per_video_s": round(wall_per_video_s, 1),
        "streams_per_core": round(1000.0 / cpu_per_video_s, 2) if cpu_per_video_s else None,
        "stages": per_stage,
    }


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="citysight bench pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--video", type=Path, action="append", help="clip(s); default street-720p")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of each clip per profile")
    p.add_argument("--profiles", default=",".join(PROFILES), help=f"from {list(PROFILES)}")
    p.add_argument("--detectors", default=",".join(DETECTORS))
    p.add_argument("--input-size", default="960x540", help="resize target WxH")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "pipeline.json")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``citysight bench pipeline``."""
    args = build_parser().parse_args(argv)
    videos = args.video or [DEFAULT_VIDEO]
    profiles = [p for p in args.profiles.split(",") if p]
    detectors = [d for d in args.detectors.split(",") if d]
    bad = [p for p in profiles if p not in PROFILES] + [d for d in detectors if d not in DETECTORS]
    missing = [str(v) for v in videos if not v.exists()]
    if bad or missing or not 0 < args.seconds <= 600:
        print(
            f"citysight bench pipeline: unknown {bad}, missing {missing}, or --seconds "
            "outside 0..600",
            file=sys.stderr,
        )
        return 2
    w, _, h = args.input_size.partition("x")
    size = (int(w), int(h))
    models_dir = args.models_dir or default_models_dir()

    import cv2
    import redis

    from citysight.app.services.redis_server import EmbeddedRedis, free_port
    from citysight.config import InferenceService
    from inference.client import create_client

    cv2.setNumThreads(1)
    t_load = time.perf_counter()
    client = create_client(
        InferenceService(type="onnxruntime", models_dir=str(models_dir)), models_dir
    )
    load_s = time.perf_counter() - t_load
    # Warm-up: the first call of each detector allocates and JITs; not part of steady state.
    from citysight.contracts import FrameBatch

    blank = np.zeros((size[1], size[0], 3), np.uint8)
    for det in detectors:
        client.infer(FrameBatch([blank], ["warmup"], [0], [0.0], [frozenset({det})]))
    results = []
    with tempfile.TemporaryDirectory(prefix="csbench-pipe-") as tmp:
        srv = EmbeddedRedis(free_port(), Path(tmp), appendonly=False).start()
        r = redis.Redis.from_url(srv.url)
        try:
            for video in videos:
                for prof in profiles:
                    res = run_profile(video, prof, args.seconds, client, detectors, size, r)
                    res["video"] = video.name
                    results.append(res)
                    print(_line(res), file=sys.stderr)
        finally:
            r.close()
            srv.stop()
            client.close()
    doc = {
        "benchmark": "pipeline",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "params": {
            "seconds": args.seconds,
            "input_size": list(size),
            "detectors": detectors,
            "models_dir": str(models_dir),
            "decoder": "PyAV (FFmpeg, CPU, single thread)",
            "inference": "in-process onnxruntime client",
        },
        "model_load_s": round(load_s, 2),
        "detector_health": _jsonable(client.health()),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"pipeline bench: JSON written to {args.out}", file=sys.stderr)
    return 0


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _line(res: dict[str, Any]) -> str:
    stages = ", ".join(
        f"{k} {v['cpu_ms_per_call']:.1f}" for k, v in res["stages"].items() if k != "merge"
    )
    return (
        f"{res['video']} {res['profile']:>8}: {res['frames_decoded']} decoded, "
        f"{res['frames_analysed']} analysed, {res['cpu_ms_per_video_s']:.0f} CPU ms per video s "
        f"-> {res['streams_per_core']} streams/core  [CPU ms/call: {stages}]"
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main())
