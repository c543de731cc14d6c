"""``citysight bench vending``: PicoDet-S against YOLOX-nano on the same street frames.

Frames are taken evenly from every no-vending street clip under ``--videos``
(:func:`benchmarks.eval.vending_false_alarms.no_vending_clips`), resized to the camera input
size (960×540), and run through both networks with the same settings (one ONNX Runtime
thread, score threshold 0.3, one frame per call). Reported, in the same run:

* per vending-relevant COCO class: detections of each network, boxes matched between them
  (same class, IoU ≥ 0.5, greedy by IoU) and each network's unmatched boxes;
* per-frame CPU ms of each network (preprocessing, inference and decoding; ``p50`` and
  ``mean``), and the ratio to YOLOX-nano;
* the amortised per-frame cost of each vending *tier* (network at its interval + stationary
  cue) over consecutive analysed frames of one clip, and its ratio to today's tier
  (YOLOX-nano on every frame).

Results: JSON plus a Markdown table (``benchmarks/results/vending.json`` / ``.md``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.common.results import emit
from benchmarks.common.stats import latency_summary
from benchmarks.eval.vending_false_alarms import no_vending_clips, sampled_frames
from inference.detectors.common import OrtOptions, box_iou, using_ort_options
from inference.detectors.picodet import PicoDetModel
from inference.detectors.vending import (
    MAX_BOX_FRAC,
    PICODET_EVERY,
    PicodetVending,
    YoloxVending,
)
from inference.detectors.yolo import Detections, YoloLayout, YoloModel, YoloSpec

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", REPO.parent / "shared"))
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_OUT = RESULTS / "vending.json"
SIZE = (960, 540)
CONF = 0.3
#: The COCO classes the vending tiers map (``inference.detectors.vending.COCO_TO_CLASS``).
COCO_NAMES = {
    0: "person",
    1: "bicycle",
    2: "car",
    3: "motorcycle",
    5: "bus",
    7: "truck",
    25: "umbrella",
    56: "chair",
    60: "dining table",
}
#: The clip of the amortised-cost run (people and cars, 5 fps analysis).
AMORTISED_CLIP = "street_intel_one-by-one-person-detection.mp4"

Frame = npt.NDArray[np.uint8]


def pick_frames(path: Path, n: int) -> list[Frame]:
    """``n`` frames spread evenly over the clip (1 fps sampling, then an even subset)."""
    frames = [f for _, f in sampled_frames(path, 1.0, SIZE)]
    if len(frames) <= n:
        return frames
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return [frames[i] for i in idx]


def match(a: Detections, b: Detections, iou: float = 0.5) -> dict[int, tuple[int, int, int]]:
    """Per COCO class: (matched, only in ``a``, only in ``b``), same class and IoU ≥ ``iou``."""
    out: dict[int, tuple[int, int, int]] = {}
    for c in COCO_NAMES:
        ba, bb = a[0][a[2] == c], b[0][b[2] == c]
        if not len(ba) and not len(bb):
            continue
        m = 0
        if len(ba) and len(bb):
            ious = box_iou(ba, bb)
            while ious.size and ious.max() >= iou:
                r, k = np.unravel_index(int(ious.argmax()), ious.shape)
                ious[r, :] = -1
                ious[:, k] = -1
                m += 1
        out[c] = (m, len(ba) - m, len(bb) - m)
    return out


def timed(model: Any, frame: Frame) -> tuple[Detections, float]:
    """The model's detections of ``frame`` and the milliseconds they took."""
    t0 = time.perf_counter()
    det = model(frame)
    return det, (time.perf_counter() - t0) * 1000


def split_whole_frame(det: Detections, frame: Frame) -> tuple[Detections, int]:
    """Detections the vending tiers keep (``MAX_BOX_FRAC``) and how many they drop."""
    b, s, c = det
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep = area <= MAX_BOX_FRAC * frame.shape[0] * frame.shape[1]
    keep &= np.isin(c, list(COCO_NAMES))
    dropped = int((~keep & np.isin(c, list(COCO_NAMES))).sum())
    return (b[keep], s[keep], c[keep]), dropped


def amortised(tier: Any, frames: list[Frame], cam: str) -> dict[str, Any]:
    """Mean ms per analysed frame of a vending tier over consecutive ``frames``."""
    tier.detect(frames[:1], [f"{cam}-warm"])
    ms = []
    for f in frames:
        t0 = time.perf_counter()
        tier.detect([f], [cam])
        ms.append((time.perf_counter() - t0) * 1000)
    s = latency_summary(ms)
    return {"frames": len(frames), "mean_ms": s["mean"], "p50_ms": s["p50"], "max_ms": s["max"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return the result dict."""
    models, videos = Path(args.models), Path(args.videos)
    opts = OrtOptions(threads=1)
    with using_ort_options(opts):
        pico = PicoDetModel(models / "picodet_s_416_coco.onnx", conf=CONF)
        yolo = YoloModel(
            models / "yolox_nano.onnx", YoloSpec.for_layout(YoloLayout.YOLOX, 416), conf=CONF
        )
    clips = no_vending_clips(videos)
    if args.clips:
        clips = [c for c in clips if c.name in set(args.clips.split(","))]
    per_class = {c: {"picodet": 0, "yolox": 0, "matched": 0} for c in COCO_NAMES}
    ms: dict[str, list[float]] = {"picodet": [], "yolox": []}
    whole = {"picodet": 0, "yolox": 0}
    per_clip = []
    for clip in clips:
        frames = pick_frames(clip, args.frames_per_clip)
        counts = {"picodet": 0, "yolox": 0, "matched": 0}
        for f in frames:
            pico(f)  # warm caches per frame size before timing
            dp, tp = timed(pico, f)
            dy, ty = timed(yolo, f)
            ms["picodet"].append(tp)
            ms["yolox"].append(ty)
            dp, wp = split_whole_frame(dp, f)
            dy, wy = split_whole_frame(dy, f)
            whole["picodet"] += wp
            whole["yolox"] += wy
            for c, (m, only_p, only_y) in match(dp, dy).items():
                per_class[c]["picodet"] += m + only_p
                per_class[c]["yolox"] += m + only_y
                per_class[c]["matched"] += m
                counts["picodet"] += m + only_p
                counts["yolox"] += m + only_y
                counts["matched"] += m
        per_clip.append({"video": clip.name, "frames": len(frames), **counts})
    stats = {k: latency_summary(v) for k, v in ms.items()}
    base = stats["yolox"]
    timing = {
        k: {
            "p50_ms": v["p50"],
            "mean_ms": v["mean"],
            "p50_ratio_vs_yolox": round(v["p50"] / base["p50"], 3) if base["p50"] else None,  # type: ignore[operator]
        }
        for k, v in stats.items()
    }
    classes = {
        COCO_NAMES[c]: {
            **v,
            # matched / boxes either network found (1.0: identical box sets)
            "agreement": round(v["matched"] / (v["picodet"] + v["yolox"] - v["matched"]), 3)
            if v["picodet"] + v["yolox"]
            else None,
        }
        for c, v in per_class.items()
    }
    res: dict[str, Any] = {
        "settings": {
            "input": list(SIZE),
            "score_threshold": CONF,
            "onnxruntime_threads": 1,
            "match_iou": 0.5,
            "max_box_frac": MAX_BOX_FRAC,
            "frames_per_clip": args.frames_per_clip,
            "load_1min": round(os.getloadavg()[0], 2),
        },
        "timing": timing,
        "classes": classes,
        # Boxes over MAX_BOX_FRAC of the frame (dropped by the tiers, not in `classes`).
        "whole_frame_boxes_dropped": whole,
        "frames": len(ms["yolox"]),
        "clips": per_clip,
    }
    seq_clip = videos / AMORTISED_CLIP
    if seq_clip.is_file() and args.amortised_frames:
        frames_at_5fps = sampled_frames(seq_clip, 5.0, SIZE)
        seq = [f for _, f in itertools.islice(frames_at_5fps, args.amortised_frames)]
        with using_ort_options(opts):
            tiers = {
                "yolox (every frame, today)": YoloxVending(models / "yolox_nano.onnx", every=1),
                "picodet (every frame)": PicodetVending(
                    models / "picodet_s_416_coco.onnx", every=1
                ),
                f"picodet (every {PICODET_EVERY}th frame, default)": PicodetVending(
                    models / "picodet_s_416_coco.onnx", every=PICODET_EVERY
                ),
            }
        am = {name: amortised(t, seq, "bench") for name, t in tiers.items()}
        today = am["yolox (every frame, today)"]["mean_ms"]
        for v in am.values():
            v["ratio_vs_today"] = round(v["mean_ms"] / today, 3) if today else None
        res["amortised"] = {"clip": AMORTISED_CLIP, "analytics_fps": 5.0, "tiers": am}
    return res


def table(res: dict[str, Any]) -> str:
    """Markdown tables of the result."""
    lines = [
        "| network | p50 ms/frame | mean ms/frame | p50 ratio vs YOLOX-nano |",
        "|---|---|---|---|",
    ]
    for k, v in res["timing"].items():
        lines.append(f"| {k} | {v['p50_ms']} | {v['mean_ms']} | {v['p50_ratio_vs_yolox']} |")
    lines += ["", "| class | PicoDet-S | YOLOX-nano | matched (IoU ≥ 0.5) | agreement |"]
    lines.append("|---|---|---|---|---|")
    for name, v in res["classes"].items():
        lines.append(
            f"| {name} | {v['picodet']} | {v['yolox']} | {v['matched']} | {v['agreement']} |"
        )
    lines.append(
        f"\n{res['frames']} frames; whole-frame boxes dropped: {res['whole_frame_boxes_dropped']}"
    )
    if "amortised" in res:
        lines += ["", "| vending tier | mean ms/analysed frame | ratio vs today |", "|---|---|---|"]
        for name, v in res["amortised"]["tiers"].items():
            lines.append(f"| {name} | {v['mean_ms']} | {v['ratio_vs_today']} |")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="citysight bench vending", description=__doc__.splitlines()[0])
    p.add_argument("--models", default=str(SHARED / "models"), help="model files dir")
    p.add_argument("--videos", default=str(SHARED / "data" / "videos"), help="clips dir")
    p.add_argument("--clips", default="", help="comma-separated clip names (default: all)")
    p.add_argument("--frames-per-clip", type=int, default=20, help="frames compared per clip")
    p.add_argument(
        "--amortised-frames", type=int, default=100, help="consecutive frames of the tier run"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result path")
    p.add_argument("--json", action="store_true", help="print JSON (default: the table)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; 2 on bad arguments or missing model files."""
    args = _parser().parse_args(argv)
    if args.frames_per_clip < 1 or args.amortised_frames < 0:
        print("--frames-per-clip must be ≥ 1 and --amortised-frames ≥ 0", file=sys.stderr)
        return 2
    for name in ("picodet_s_416_coco.onnx", "yolox_nano.onnx"):
        if not (Path(args.models) / name).is_file():
            print(f"citysight bench vending: {name} missing under {args.models}", file=sys.stderr)
            return 2
    emit(run(args), args.out, as_json=args.json, table=table, markdown=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
