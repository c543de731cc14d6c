"""The trained fire/smoke detector next to the classical tier, in one run on one CPU.

``python -m benchmarks.fire_det.cli`` (``--model`` defaults to the bundled
``inference/models/fire_smoke_det.onnx``)
writes ``benchmarks/results/fire_smoke_det.json`` (and prints a table):

* **cross-source accuracy** on ``../shared/data/eval`` ``fire`` and ``smoke`` (image-level
  P/R/F1 and ``box_f1`` at IoU 0.3, scored by ``benchmarks.eval.runner`` exactly as
  ``citysight eval`` scores), both tiers on the same images. The trained tier's thresholds
  come from its file (chosen on held-out training clips); nothing here tunes anything;
* **per-frame CPU cost** of both tiers on the same frames (eval images and 720p street
  frames), interleaved in rounds so load changes on a shared host hit both alike;
* **false detections on no-fire video**: every ``--every``-th frame of each clip in
  ``../shared/data/videos`` (not the fire clip), the share of frames with any fire or smoke
  box, the same as detections per camera-hour at 5 analysed frames/s, and alarms (3 of 5
  sampled frames) per hour with the rule-of-three bound when there are none. Each clip is
  tagged with its role in training (``trained_on``, ``validation``, ``unseen``);
* **house6** (the FURG fire clip): share of sampled frames with a fire box.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.eval.dataset import load_task
from benchmarks.eval.runner import eval_image_level
from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorBackend
from inference.detectors.common import read_image
from inference.detectors.fire_smoke import ClassicalFireSmoke
from inference.detectors.fire_smoke_net import BUNDLED_MODEL, NetFireSmoke
from inference.detectors.fire_smoke_temporal import TemporalFireSmoke

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", ROOT.parent / "shared"))
DEFAULT_MODEL = BUNDLED_MODEL
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "fire_smoke_det.json"
ANALYSED_FPS = 5.0
FIRE_CLIP = "fire_furg_house6.mp4"

U8 = npt.NDArray[np.uint8]


def clip_role(name: str) -> str:
    """How the training used a no-fire clip (see ``inference.training.fire_det.synth``)."""
    from inference.training.fire_det.synth import (
        TRAIN_NEGATIVE_CLIPS,
        UNSEEN_NEGATIVE_CLIPS,
        VALIDATION_NEGATIVE_CLIPS,
    )

    if name in TRAIN_NEGATIVE_CLIPS or name in ("street-720p.mp4", "street-1080p.mp4"):
        return "trained_on"
    if name in VALIDATION_NEGATIVE_CLIPS:
        return "validation"
    if name in UNSEEN_NEGATIVE_CLIPS:
        return "unseen"
    return "unknown"


def cross_source(tiers: dict[str, DetectorBackend], eval_dir: Path) -> dict[str, Any]:
    """Image-level and box scores of each tier on the eval ``fire`` and ``smoke`` sets."""
    out: dict[str, Any] = {}
    for task, cls in (("fire", ObjectClass.FIRE), ("smoke", ObjectClass.SMOKE)):
        images = load_task(eval_dir, task)
        out[task] = {}
        for name, det in tiers.items():
            t0 = time.perf_counter()
            skipped: list[str] = []
            res = eval_image_level(det, images, cls, skipped)
            res["seconds"] = round(time.perf_counter() - t0, 2)
            out[task][name] = res
    return out


def per_frame_ms(
    tiers: dict[str, DetectorBackend], frames: dict[str, list[U8]], rounds: int
) -> dict[str, Any]:
    """Median per-frame ``detect`` time of each tier on each frame set.

    Rounds alternate the tiers (A B A B ...), each round over every frame, so a busy
    neighbour slows both alike; each frame is a fresh camera for the classical tier on the
    still-image set and one camera on the video set (its motion path).
    """
    out: dict[str, Any] = {}
    for set_name, fs in frames.items():
        times: dict[str, list[float]] = {n: [] for n in tiers}
        for r in range(rounds):
            for name, det in tiers.items() if r % 2 == 0 else reversed(tiers.items()):
                for i, f in enumerate(fs):
                    cam = f"still-{i}" if set_name == "eval_images" else "video"
                    t0 = time.perf_counter()
                    det.detect([f], [cam])
                    times[name].append(time.perf_counter() - t0)
        res: dict[str, Any] = {
            n: {
                "median_ms": round(1000 * statistics.median(v), 2),
                "mean_ms": round(1000 * statistics.fmean(v), 2),
                "calls": len(v),
            }
            for n, v in times.items()
        }
        base = list(tiers)[-1]  # the classical tier, the baseline
        for a in list(tiers)[:-1]:
            res["ratio_" + a + "_to_" + base] = round(
                res[a]["median_ms"] / res[base]["median_ms"], 3
            )
        res["frames"] = len(fs)
        res["frame_size"] = list(fs[0].shape[:2]) if fs else None
        out[set_name] = res
    return out


def _sample_video(path: Path, every: int) -> tuple[list[U8], float, int]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames, n = [], 0
    ok, f = cap.read()
    while ok:
        if n % every == 0:
            frames.append(np.asarray(f, np.uint8))
        n += 1
        ok, f = cap.read()
    cap.release()
    return frames, fps, n


def video_false_detections(
    tiers: dict[str, DetectorBackend], videos: Path, every: int
) -> dict[str, Any]:
    """Per clip and tier: frames with any fire/smoke box, per camera-hour, and alarms."""
    clips = sorted(
        p
        for p in videos.iterdir()
        if p.suffix in (".mp4", ".gif") and p.name not in (FIRE_CLIP, "pyronear_test_smoke.mp4")
    )
    per: list[dict[str, Any]] = []
    for clip in clips:
        frames, fps, n = _sample_video(clip, every)
        row: dict[str, Any] = {
            "video": clip.name,
            "role": clip_role(clip.name),
            "seconds": round(n / fps, 1),
            "sampled_frames": len(frames),
            "every": every,
        }
        for name, det in tiers.items():
            hist: list[bool] = []
            alarms, on = 0, False
            counts = {"fire": 0, "smoke": 0, "any": 0}
            for f in frames:
                o = det.detect([f], [f"fa-{clip.stem}"])[0]
                fire = bool((o.class_ids == int(ObjectClass.FIRE)).any())
                smoke = bool((o.class_ids == int(ObjectClass.SMOKE)).any())
                counts["fire"] += fire
                counts["smoke"] += smoke
                counts["any"] += fire or smoke
                hist = [*hist[-4:], fire or smoke]
                now = sum(hist) >= 3
                alarms += now and not on
                on = now
            row[name] = {
                "frames_with_fire": counts["fire"],
                "frames_with_smoke": counts["smoke"],
                "frame_rate": round(counts["any"] / max(1, len(frames)), 4),
                "alarms_3_of_5": alarms,
            }
        per.append(row)
    out: dict[str, Any] = {"clips": per}
    for group in ("unseen", "all"):
        rows = [r for r in per if group == "all" or r["role"] == group]
        hours = sum(r["seconds"] for r in rows) / 3600
        frames_n = sum(r["sampled_frames"] for r in rows)
        g: dict[str, Any] = {"hours": round(hours, 4), "sampled_frames": frames_n}
        for name in tiers:
            pos = sum(r[name]["frame_rate"] * r["sampled_frames"] for r in rows)
            rate = pos / max(1, frames_n)
            alarms = sum(r[name]["alarms_3_of_5"] for r in rows)
            g[name] = {
                "frame_rate": round(rate, 4),
                # Each analysed frame is one chance of a false detection: at 5 analysed
                # frames/s a camera-hour holds 18,000 of them.
                "false_detections_per_camera_hour_at_5fps": round(rate * ANALYSED_FPS * 3600, 1),
                "alarms": alarms,
                "alarms_per_hour": round(alarms / hours, 1) if hours else None,
                "alarms_upper95_per_hour": round(3 / hours, 1) if hours and alarms == 0 else None,
            }
        out[group] = g
    return out


def house6(tiers: dict[str, DetectorBackend], videos: Path, every: int) -> dict[str, Any]:
    """The FURG fire clip, per tier: share of the labelled sampled frames with a fire box,
    time of the first fire box and of the first alarm (3 of 5 sampled frames with fire, the
    same rule as :func:`video_false_detections`). Flame is labelled from the clip's first
    frame (``fire_furg_house6.boxes.json``), so both times are counted from 0 s."""
    path = videos / FIRE_CLIP
    boxes_path = videos / "fire_furg_house6.boxes.json"
    if not path.is_file():
        return {}
    # frames: {"<frame index>": [[x, y, w, h], ...]}; a missing index is a frame without fire.
    labelled: dict[str, Any] | None = (
        json.loads(boxes_path.read_text())["frames"] if boxes_path.is_file() else None
    )
    frames, fps, _ = _sample_video(path, every)
    first_labelled = (
        min((int(k) for k, v in labelled.items() if v), default=0) if labelled is not None else 0
    )
    out: dict[str, Any] = {
        "sampled_frames": len(frames),
        "every": every,
        "fps": round(fps, 2),
        "first_labelled_fire_s": round(first_labelled / fps, 2),
    }
    for name, det in tiers.items():
        hit = pos = 0
        first_box_s: float | None = None
        first_alarm_s: float | None = None
        hist: list[bool] = []
        for k, f in enumerate(frames):
            idx = k * every
            o = det.detect([f], [f"house6-{name}"])[0]
            fire = bool((o.class_ids == int(ObjectClass.FIRE)).any())
            t = idx / fps
            if fire and first_box_s is None:
                first_box_s = round(t, 2)
            hist = [*hist[-4:], fire]
            if sum(hist) >= 3 and first_alarm_s is None:
                first_alarm_s = round(t, 2)
            if labelled is None or labelled.get(str(idx)):
                pos += 1
                hit += fire
        out[name] = {
            "frames_with_fire_labelled": pos,
            "detected": hit,
            "rate": round(hit / max(1, pos), 4),
            "first_fire_box_s": first_box_s,
            "first_alarm_s": first_alarm_s,
            "first_alarm_after_flame_s": (
                round(first_alarm_s - first_labelled / fps, 2)
                if first_alarm_s is not None
                else None
            ),
        }
    return out


def demo_scenes(tiers: dict[str, DetectorBackend], frames_per_scene: int = 20) -> dict[str, Any]:
    """Share of frames of each procedural demo scene (``streams.synthetic``, what
    ``citysight demo`` streams) with a fire or smoke box, per tier. Synthetic pictures: a
    check that the demo shows the tier working, not an accuracy figure."""
    from streams.synthetic.scenes import SCENES

    out: dict[str, Any] = {}
    for scene, cls in SCENES.items():
        drawer = cls((960, 540), 10, 20.0)
        idx = np.linspace(0, drawer.num_frames - 1, frames_per_scene).round().astype(int)
        frames = [np.ascontiguousarray(drawer.draw(int(i))[:, :, ::-1]) for i in idx]
        row: dict[str, Any] = {}
        for name, det in tiers.items():
            fire = smoke = 0
            for f in frames:
                o = det.detect([f], [f"demo-{scene}-{name}"])[0]
                fire += bool((o.class_ids == int(ObjectClass.FIRE)).any())
                smoke += bool((o.class_ids == int(ObjectClass.SMOKE)).any())
            row[name] = {"fire_frames": fire, "smoke_frames": smoke, "frames": len(frames)}
        out[scene] = row
    return out


def table(res: dict[str, Any]) -> str:
    """Markdown table of the accuracy and timing figures."""
    lines = ["| task | tier | P | R | F1 | box F1 |", "|---|---|---|---|---|---|"]
    for task, tiers in res["cross_source"].items():
        for name, m in tiers.items():
            lines.append(
                f"| {task} ({m['images']} images) | {name} | {m['precision']:.3f} | "
                f"{m['recall']:.3f} | {m['f1']:.3f} | {m['box_f1']:.3f} |"
            )
    lines += ["", "| frames | tier | median ms/frame |", "|---|---|---|"]
    for set_name, r in res["per_frame_ms"].items():
        for name in res["tiers"]:
            lines.append(f"| {set_name} {r['frame_size']} | {name} | {r[name]['median_ms']} |")
    vfd = res.get("video_false_detections")
    if vfd:
        lines += [
            "",
            "| no-fire clips | tier | frames flagged | alarms (3 of 5) | alarms/h (95 % bound) |",
            "|---|---|---|---|---|",
        ]
        for group in ("unseen", "all"):
            g = vfd[group]
            for name in res["tiers"]:
                m = g[name]
                per_h = (
                    m["alarms_per_hour"] if m["alarms"] else f"0 (≤ {m['alarms_upper95_per_hour']})"
                )
                lines.append(
                    f"| {group} ({g['hours'] * 60:.1f} min, {g['sampled_frames']} frames) "
                    f"| {name} | {m['frame_rate']:.2%} | {m['alarms']} | {per_h} |"
                )
    h6 = res.get("house6")
    if h6:
        lines += ["", "| house6 | tier | labelled frames found | first box s | first alarm s |"]
        lines.append("|---|---|---|---|---|")
        for name in res["tiers"]:
            m = h6[name]
            lines.append(
                f"| {h6['sampled_frames']} sampled | {name} | {m['rate']:.2%} | "
                f"{m['first_fire_box_s']} | {m['first_alarm_s']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fire_det.cli", description=__doc__)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--eval", type=Path, default=SHARED / "data" / "eval")
    ap.add_argument("--videos", type=Path, default=SHARED / "data" / "videos")
    ap.add_argument("--every", type=int, default=5, help="analyse every Nth video frame")
    ap.add_argument("--rounds", type=int, default=4, help="timing rounds per frame set")
    ap.add_argument("--input-long-side", type=int, help="override the model's input size")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--skip-videos", action="store_true")
    ap.add_argument(
        "--demo-frames", type=int, default=20, help="frames per procedural demo scene (0: none)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for p in (args.model, args.eval):
        if not p.exists():
            print(f"error: {p} not found", file=sys.stderr)
            return 2
    net = NetFireSmoke(args.model, input_long_side=args.input_long_side)
    # "det" is the tier as registered (the network + temporal confirmation per camera);
    # "det_frame" the network alone. On still images (a fresh camera each) they agree.
    tiers: dict[str, DetectorBackend] = {
        "det": TemporalFireSmoke(NetFireSmoke(args.model, input_long_side=args.input_long_side)),
        "det_frame": net,
        "classical": ClassicalFireSmoke(),
    }
    res: dict[str, Any] = {
        "model": str(
            args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model
        ),
        "model_bytes": args.model.stat().st_size,
        "thresholds": dict(zip(net.meta.classes, net.thresholds, strict=True)),
        "input_long_side": net._model.long_side,
        "tiers": list(tiers),
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "ort_threads": 1,
        "what": "cross-source: ../shared/data/eval (never trained or tuned on)",
    }
    res["cross_source"] = cross_source(tiers, args.eval)
    eval_frames = [read_image(im.path) for im in load_task(args.eval, "fire")[::4]]
    street: list[U8] = []
    if (args.videos / "street-720p.mp4").is_file():
        street = _sample_video(args.videos / "street-720p.mp4", 25)[0][:20]
    sets = {"eval_images": eval_frames}
    if street:
        sets["street_720p_video"] = street
    res["per_frame_ms"] = per_frame_ms(tiers, sets, args.rounds)
    if not args.skip_videos and args.videos.is_dir():
        res["video_false_detections"] = video_false_detections(tiers, args.videos, args.every)
        res["house6"] = house6(tiers, args.videos, args.every)
    if args.demo_frames > 0:
        res["demo_scenes_synthetic"] = demo_scenes(tiers, args.demo_frames)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
