"""``citysight bench rules``: frame results per second through the real rules consumer.

Simulated cameras (a separate process) publish FrameResults onto the detections streams
at ``cameras × fps``; one :class:`DetectionsConsumer` (this process) consumes, evaluates
and writes alerts exactly as in production. Reported:

* ``sustained_frame_results_per_s``: frames processed / time from the first publish until
  the consumer caught up (or gave up draining);
* ``latency_p50_ms`` / ``latency_p99_ms``: FrameResult ``published_at`` → its batch was
  written and acknowledged; ``alert_latency_*``: the same for frames that raised alerts;
* ``lost``: published frames not processed by the end of the drain.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks.rules.load import camera_ids, produce
from citysight.config import CitysightConfig
from citysight.contracts import Alert, FrameResult
from citysight.keys import detections_stream

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "rules.json"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _import_consumer() -> Any:
    # An editable install made before serve_app/ existed does not map it; fall back to the
    # checkout this file lives in.
    try:
        from serve_app.consumer import DetectionsConsumer
    except ModuleNotFoundError:
        sys.path.insert(0, str(REPO_ROOT))
        from serve_app.consumer import DetectionsConsumer
    return DetectionsConsumer


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="citysight bench rules", description=__doc__.split("\n")[0])
    p.add_argument("--cameras", type=int, default=200, help="simulated cameras")
    p.add_argument("--fps", type=float, default=5.0, help="frame results per camera per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    p.add_argument("--shards", type=int, default=4, help="detections streams")
    p.add_argument(
        "--detection-ratio",
        type=float,
        default=0.05,
        help="share of frames with a (person) detection",
    )
    p.add_argument("--redis-url", default=None, help="external Redis (default: embedded)")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the consumer to catch up after the load",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _config(cameras: int, shards: int) -> CitysightConfig:
    return CitysightConfig.model_validate({
        "cameras": [{"id": c, "url": f"rtsp://sim/{c}", "latitude": 52.0 + i * 1e-4,
                     "longitude": 4.0} for i, c in enumerate(camera_ids(cameras))],
        "departments": [{"id": "fire"}, {"id": "duty"}],
        "routing": [{"kind": "fire", "department": "fire"}, {"kind": "*", "department": "duty"}],
        "services": {"streams": {"shards": shards}},
    })  # fmt: skip


def _pct(a: list[float], q: float) -> float | None:
    return round(float(np.percentile(a, q)), 1) if a else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return the result dict."""
    consumer_cls = _import_consumer()
    embedded = None
    url = args.redis_url
    if url is None:
        from citysight.app.services.redis_server import EmbeddedRedis, free_port

        embedded = EmbeddedRedis(
            free_port(), Path(tempfile.mkdtemp(prefix="bench-rules-")), appendonly=False
        )
        embedded.start()
        url = embedded.url
    r = redis.Redis.from_url(url)
    try:
        for s in range(args.shards):
            r.delete(detections_stream(s))
        cfg = _config(args.cameras, args.shards)
        lat: list[float] = []
        alert_lat: list[float] = []
        processed = [0, 0.0]

        def on_batch(frames: list[FrameResult], alerts: list[Alert], done: float) -> None:
            lat.extend((done - f.published_at) * 1000 for f in frames if f.published_at)
            by_t = {(f.camera_id, f.frame_time): f.published_at for f in frames}
            for a in alerts:
                pub = by_t.get((a.camera_id, a.detected_at))
                if pub:
                    alert_lat.append((done - pub) * 1000)
            processed[0] += len(frames)
            processed[1] = done

        consumer = consumer_cls(
            url,
            cfg,
            "bench",
            range(args.shards),
            count=1000,
            block_ms=50,
            replay_s=0,
            on_batch=on_batch,
        )
        consumer.setup()
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                consumer.step()

        th = threading.Thread(target=loop, daemon=True)
        th.start()
        result = mp.Manager().list()
        prod = mp.get_context("spawn").Process(
            target=produce,
            args=(
                url,
                args.cameras,
                args.fps,
                args.duration,
                args.shards,
                args.detection_ratio,
                result,
            ),
        )
        prod.start()
        prod.join()
        produced, t_start, t_end = int(result[0]), float(result[1]), float(result[2])
        deadline = time.time() + args.drain_timeout
        while processed[0] < produced and time.time() < deadline:
            time.sleep(0.05)
        stop.set()
        th.join(5)
        elapsed = max(processed[1], t_end) - t_start
        out = {
            "cameras": args.cameras, "fps": args.fps, "duration_s": args.duration,
            "shards": args.shards, "detection_ratio": args.detection_ratio,
            "offered_frame_results_per_s": args.cameras * args.fps,
            "produced": produced,
            "produced_per_s": round(produced / max(t_end - t_start, 1e-9), 1),
            "processed": processed[0],
            "sustained_frame_results_per_s": round(processed[0] / max(elapsed, 1e-9), 1),
            "latency_p50_ms": _pct(lat, 50), "latency_p99_ms": _pct(lat, 99),
            "alert_latency_p50_ms": _pct(alert_lat, 50),
            "alert_latency_p99_ms": _pct(alert_lat, 99),
            "alerts": consumer.stats["alerts"],
            "lost": produced - processed[0],
            "cpu_count": os.cpu_count(),
            "note": "one consumer thread (one core) + producer process + redis on one box",
            "planner": {"rules_results_per_core_per_s":
                        round(processed[0] / max(elapsed, 1e-9), 1)},
        }  # fmt: skip
        return out
    finally:
        r.close()
        if embedded is not None:
            embedded.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``citysight bench rules``; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.cameras < 1 or args.fps <= 0 or args.duration <= 0:
        print("cameras, fps and duration must be positive", file=sys.stderr)
        return 2
    res = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(
            f"{res['sustained_frame_results_per_s']:.0f} frame results/s sustained "
            f"(offered {res['offered_frame_results_per_s']:.0f}/s), latency p50 "
            f"{res['latency_p50_ms']} ms p99 {res['latency_p99_ms']} ms, lost {res['lost']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
