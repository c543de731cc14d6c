"""``citysight bench streams``: camera streams per CPU core at a 1 fps analytics profile.

Each camera is a :class:`~streams.reader.CameraReader` on a looped file paced at its
native rate (a file behaves like a live camera), sampling 1 fps into one
:class:`~streams.mux.FrameMux`; one consumer takes batches and runs a no-op inference, so
the measured work is decode + sample + convert + mux. The camera count doubles step by
step (running cameras keep running) until a step is not sustained, then bisects between the
best sustained and the failed count:

* mean delivered fps over the cameras below 95 % of the profile's expected fps (1 fps for
  full decode; for keyframe-only what the 1 fps sampler can take from the clip's keyframes),
  less one frame per window of counting slack,
* or any camera running more than ``--lag-limit-s`` behind its native rate,
* or any mux drop.

Reported per profile (clip x full / keyframe-only): max sustained cameras, cameras per
core (= max sustained / usable cores) and CPU % per camera at that step. Prints one JSON
object and writes ``benchmarks/results/streams.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import av

from citysight.config import CameraConfig, CameraProfile
from citysight.contracts import FrameBatch, FrameResult
from streams.mux import FrameMux
from streams.reader import CameraReader, ReaderOptions

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", ROOT.parent / "shared"))
DEFAULT_CLIPS = [SHARED / "data/videos/street-720p.mp4", SHARED / "data/videos/street-1080p.mp4"]
DEFAULT_OUT = ROOT / "benchmarks/results/streams.json"
ANALYTICS_FPS = 1.0
SUSTAIN_RATIO = 0.95


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def noop_infer(batch: FrameBatch) -> list[FrameResult]:
    """Inference excluded: returns no results."""
    return []


def sampled_times(times: list[float], period: float) -> list[float]:
    """The reader's sampler (tolerating early frames by 15 % of a period) on frame times."""
    out: list[float] = []
    next_emit = -1.0
    t0 = times[0] if times else 0.0
    for t in times:
        rel = t - t0
        if rel < next_emit - 0.15 * period:
            continue
        next_emit = max(next_emit + period, rel) if next_emit >= 0 else rel + period
        out.append(rel)
    return out


def clip_profile(clip: Path, keyframe_only: bool) -> dict[str, float]:
    """Expected delivered fps and a single-thread decode cost estimate for a profile."""
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        tb = s.time_base
        assert tb is not None  # a demuxed video stream has a time base
        fps = float(s.average_rate or 25)
        pts = sorted(
            (float(p.pts * tb), bool(p.is_keyframe)) for p in c.demux(s) if p.pts is not None
        )
    duration = pts[-1][0] - pts[0][0] + 1.0 / fps
    times = [t for t, key in pts if key or not keyframe_only]
    expected = len(sampled_times(times, 1.0 / ANALYTICS_FPS)) / duration
    # CPU cost of decoding one camera-second (first 50 decoded frames, one thread).
    cpu0 = _cpu_s()
    n = 0
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        s.codec_context.thread_type = "NONE"
        if keyframe_only:
            s.codec_context.skip_frame = "NONKEY"
        for pkt in c.demux(s):
            n += len(pkt.decode())
            if n >= (8 if keyframe_only else 50):
                break
    cpu_per_frame = (_cpu_s() - cpu0) / max(n, 1)
    decoded_per_s = len(times) / duration
    return {
        "expected_fps": expected,
        "duration_s": duration,
        "decoded_fps": decoded_per_s,
        "est_cpu_per_camera": cpu_per_frame * decoded_per_s,
    }


class Rig:
    """Readers of one profile feeding one mux, drained by a no-op inference thread."""

    def __init__(self, clip: Path, keyframe_only: bool, width: int, height: int) -> None:
        self.clip = clip
        self.keyframe_only = keyframe_only
        self.size = (width, height)
        self.mux = FrameMux(queue_frames=2)
        self.readers: list[CameraReader] = []
        self.delivered: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = threading.Thread(target=self._consume, name="bench-consumer", daemon=True)
        self._consumer.start()

    def _consume(self) -> None:
        while not self._stop.is_set():
            batch = self.mux.next_batch(32, 50.0, 0.2)
            if batch is None:
                continue
            noop_infer(batch)
            with self._lock:
                self.delivered.update(batch.camera_ids)

    def resize(self, n: int) -> None:
        """Add or stop cameras until ``n`` run."""
        while len(self.readers) > n:
            r = self.readers.pop()
            r.stop()
            self.mux.remove_camera(r.camera_id)
        while len(self.readers) < n:
            cid = f"cam-{len(self.readers):04d}"
            cam = CameraConfig(
                id=cid,
                url=str(self.clip),
                latitude=0,
                longitude=0,
                profile=CameraProfile(
                    analytics_fps=ANALYTICS_FPS,
                    keyframe_only=self.keyframe_only,
                    loop=True,
                    input_width=self.size[0],
                    input_height=self.size[1],
                ),
            )
            self.mux.add_camera(cid)
            r = CameraReader(cam, self.mux.push, None, ReaderOptions(pace_files=True))
            r.start()
            self.readers.append(r)

    def measure(self, window_s: float) -> dict[str, Any]:
        """Counters over one window: delivered fps, lag, drops, CPU."""
        with self._lock:
            d0 = Counter(self.delivered)
        drops0 = {cid: s["drops"] for cid, s in self.mux.stats().items()}
        late0 = sum(r.metrics()["late"] for r in self.readers)
        cpu0, t0 = _cpu_s(), time.monotonic()
        max_behind = 0.0
        while time.monotonic() - t0 < window_s:
            time.sleep(0.25)
            max_behind = max(max_behind, *(r.metrics()["behind_s"] for r in self.readers))
        wall = time.monotonic() - t0
        cpu = _cpu_s() - cpu0
        with self._lock:
            d1 = Counter(self.delivered)
        stats = self.mux.stats()
        fps = [(d1[r.camera_id] - d0[r.camera_id]) / wall for r in self.readers]
        return {
            "cameras": len(self.readers),
            "delivered_fps_mean": sum(fps) / len(fps),
            "delivered_fps_min": min(fps),
            "max_behind_s": max_behind,
            "drops": sum(s["drops"] - drops0.get(cid, 0) for cid, s in stats.items()),
            "late": sum(r.metrics()["late"] for r in self.readers) - late0,
            "failed": sum(r.state.value == "failed" for r in self.readers),
            "cpu_pct_total": 100.0 * cpu / wall,
            "cpu_pct_per_camera": 100.0 * cpu / wall / len(self.readers),
        }

    def close(self) -> None:
        """Stop every reader (in parallel) and the consumer."""
        for r in self.readers:
            r._stop.set()
        for r in self.readers:
            r.stop()
        self._stop.set()
        self.mux.close()
        self._consumer.join(5)


def ramp(
    clip: Path,
    keyframe_only: bool,
    *,
    cores: int,
    window_s: float,
    warmup_s: float,
    lag_limit_s: float,
    max_cameras: int,
    max_steps: int,
    start: int | None,
    deadline_mono: float,
    size: tuple[int, int],
) -> dict[str, Any]:
    """Add cameras until a step is not sustained; returns the profile's result."""
    prof = clip_profile(clip, keyframe_only)
    expected = prof["expected_fps"]
    est = cores / max(prof["est_cpu_per_camera"], 1e-6)
    rig = Rig(clip, keyframe_only, *size)
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    bad: int | None = None
    n = start or 1
    stop_reason = "max steps"
    try:
        # Double until a step fails, then bisect between the best and the failed count.
        for _ in range(max_steps):
            if time.monotonic() + warmup_s + window_s > deadline_mono:
                stop_reason = "time budget"
                break
            rig.resize(n)
            time.sleep(warmup_s)
            m = rig.measure(window_s)
            # A window holds few frames per camera: allow one frame of counting slack; the
            # lag behind the native rate is the precise keep-up signal.
            m["sustained"] = bool(
                m["delivered_fps_mean"] >= SUSTAIN_RATIO * expected - 1.0 / window_s
                and m["max_behind_s"] <= lag_limit_s
                and m["drops"] == 0
                and m["failed"] == 0
            )
            steps.append({k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()})
            logger.info("%s keyframe_only=%s: %s", clip.name, keyframe_only, steps[-1])
            if m["sustained"]:
                best = m
            else:
                bad = n
            lo = best["cameras"] if best else 0
            if bad is None:
                if n >= max_cameras:
                    stop_reason = "max cameras"
                    break
                n = min(max_cameras, n * 2)
            else:
                if bad - lo <= 1:
                    stop_reason = "not sustained"
                    break
                n = (lo + bad) // 2 if lo else max(1, bad // 2)
                if n == lo:
                    stop_reason = "not sustained"
                    break
    finally:
        rig.close()
    sustained = best["cameras"] if best else 0
    return {
        "clip": clip.name,
        "mode": "keyframe_only" if keyframe_only else "full",
        "expected_fps": round(expected, 3),
        "estimated_cameras_from_decode_cost": round(est, 1),
        "max_sustained_cameras": sustained,
        # A lower bound when the ramp stopped for budget, steps or the camera cap.
        "bound": "measured" if stop_reason == "not sustained" else f"lower bound ({stop_reason})",
        "first_unsustained_cameras": bad,
        "cameras_per_core": round(sustained / cores, 2),
        "cpu_pct_per_camera": round(best["cpu_pct_per_camera"], 2) if best else None,
        # What one whole core would hold at that CPU cost: the capacity on an idle machine,
        # where the measured ramp is capped by what a shared machine lends this process.
        "cpu_bound_cameras_per_core": round(100.0 / best["cpu_pct_per_camera"], 1)
        if best
        else None,
        "steps": steps,
    }


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``citysight bench streams``."""
    ap = argparse.ArgumentParser(prog="citysight bench streams", description=__doc__.split("\n")[0])
    ap.add_argument("--clip", action="append", type=Path, help="clip (repeatable)")
    ap.add_argument(
        "--mode",
        action="append",
        choices=["full", "keyframe_only"],
        help="decode mode (repeatable; default both)",
    )
    ap.add_argument("--window-s", type=float, default=5.0, help="measurement window per step")
    ap.add_argument("--warmup-s", type=float, default=2.0, help="settling time after adding")
    ap.add_argument("--lag-limit-s", type=float, default=0.5, help="largest lag behind native")
    ap.add_argument("--max-cameras", type=int, default=96, help="camera cap per profile")
    ap.add_argument("--max-steps", type=int, default=8, help="ramp steps per profile")
    ap.add_argument("--start", type=int, default=None, help="first step's cameras (1)")
    ap.add_argument("--budget-s", type=float, default=170.0, help="total time budget")
    ap.add_argument("--width", type=int, default=640, help="detector input width")
    ap.add_argument("--height", type=int, default=640, help="detector input height")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success, 2 when a clip is missing.
    """
    args = build_parser().parse_args(argv)
    clips: list[Path] = args.clip or DEFAULT_CLIPS
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        print(f"clip not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    modes: list[str] = args.mode or ["full", "keyframe_only"]
    cores = usable_cores()
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    profiles = []
    plan = [(c, m) for c in clips for m in modes]
    for i, (clip, mode) in enumerate(plan):
        # Share what is left of the budget evenly over the remaining profiles.
        left = args.budget_s - (time.monotonic() - t0)
        deadline = time.monotonic() + left / (len(plan) - i)
        profiles.append(
            ramp(
                clip,
                mode == "keyframe_only",
                cores=cores,
                window_s=args.window_s,
                warmup_s=args.warmup_s,
                lag_limit_s=args.lag_limit_s,
                max_cameras=args.max_cameras,
                max_steps=args.max_steps,
                start=args.start,
                deadline_mono=deadline,
                size=(args.width, args.height),
            )
        )
    out: dict[str, Any] = {
        "benchmark": "streams",
        "analytics_fps": ANALYTICS_FPS,
        "cores": cores,
        "profiles": profiles,
        "cameras_per_core": {f"{p['clip']}:{p['mode']}": p["cameras_per_core"] for p in profiles},
        "cpu_bound_cameras_per_core": {
            f"{p['clip']}:{p['mode']}": p["cpu_bound_cameras_per_core"] for p in profiles
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pyav": av.__version__,
            "load_avg_1m_before": round(load0, 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        },
        "note": "decode + 1 fps sampling + resize to the detector input + mux, no-op "
        "inference; looped files paced at native rate; one process, one decode thread per "
        "camera; sustained = mean delivered fps >= 95% of expected, no camera behind its "
        "native rate by more than lag_limit_s, no mux drops",
        "elapsed_s": round(time.monotonic() - t0, 1),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(out))
    else:
        for p in profiles:
            print(
                f"{p['clip']} {p['mode']}: {p['max_sustained_cameras']} cameras "
                f"({p['bound']}), {p['cameras_per_core']} per core, "
                f"{p['cpu_pct_per_camera']} % CPU per camera "
                f"(CPU-bound {p['cpu_bound_cameras_per_core']} per core)"
            )
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
