"""Fire/smoke alerts per event on video, with the alert logic the product runs.

``python -m benchmarks.fire_det.events`` writes ``benchmarks/results/fire_smoke_events.json``
(and ``.md``). Each clip is read the way a camera is: sampled at the camera profile's
analytics fps (the stream reader's sampler), resized to the profile's input size, run through
the ``det`` tier with the camera's ``fire_smoke`` sensitivity, and the results fed to the real
rules engine (``serve_app.rules.engine.RulesEngine``) with the rules of a config that lists
none (``citysight.rulesets.default_rules``: 3 of 5 frames, score ≥ 0.3, 300 s cooldown) and,
apart, the demo's rules (score ≥ 0.3, 120 s cooldown). An *alert* is what the engine emits.

* **house6** (``fire_furg_house6.mp4``, flame visible from the first frame per
  ``fire_furg_house6.boxes.json``): time of the first fire alert, and whether the boxes of
  the alerting frame overlap the labelled flame (an alert on a false box elsewhere does not
  count as finding the fire).
* **no-fire clips** (every clip in ``../shared/data/videos`` but the fire clip and the smoke
  plume): fire and smoke alerts per camera-hour, with the exact 95 % Poisson upper bound.
* **synthetic smoke composites**: the ``pyronear_test_smoke.mp4`` plume (smoke on black)
  blended onto each distinct no-fire clip from ``ONSET_S`` on; per event whether a smoke
  alert came while the plume was in view and how long after its onset, and alerts before
  the onset (false). Synthetic: the plume is real smoke, the scene is not where it burned.

Which clips the temporal rules were designed on and which are held out is in
``DESIGNED_ON`` (see ``docs/detectors.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.common.results import emit
from benchmarks.eval.scoring import poisson_upper95
from citysight.config import CameraConfig, CitysightConfig, RuleConfig
from citysight.contracts import FrameResult, ObjectClass
from citysight.rulesets import default_rules, demo_rules
from inference.detectors.common import box_iou
from inference.detectors.fire_smoke_net import BUNDLED_MODEL, NetFireSmoke
from inference.detectors.fire_smoke_temporal import TemporalFireSmoke
from serve_app.rules.engine import RulesEngine

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", ROOT.parent / "shared"))
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "fire_smoke_events.json"
FIRE_CLIP = "fire_furg_house6.mp4"
PLUME_CLIP = "pyronear_test_smoke.mp4"
#: Not distinct scenes: the 1080p clip is the 720p one scaled up; the plume's own background.
NOT_COMPOSITED = ("street-1080p.mp4", "pyronear_test_bg.mp4")
#: Clips looked at while designing the temporal rules (the rest are held out).
DESIGNED_ON = (FIRE_CLIP, "street_intel_one-by-one-person-detection.mp4")
ONSET_S = 6.0
PLUME_LOOPS = 2
#: Plume size (fraction of the frame width) and its anchor (centre x, bottom y; relative).
PLUME_WIDTH, PLUME_X, PLUME_BOTTOM = 0.5, 0.65, 0.75
SMOKE_GREY = 215.0

U8 = npt.NDArray[np.uint8]


def read_frames(path: Path, loop_to_s: float | None = None) -> tuple[list[U8], float]:
    """Every frame of a clip (looped until ``loop_to_s`` seconds when given) and its fps."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames: list[U8] = []
    ok, f = cap.read()
    while ok:
        frames.append(np.asarray(f, np.uint8))
        ok, f = cap.read()
    cap.release()
    if not frames:
        raise ValueError(f"{path} has no frames")
    if loop_to_s is not None:
        need = math.ceil(loop_to_s * fps)
        frames = [frames[i % len(frames)] for i in range(max(need, len(frames)))]
    return frames, fps


def sampled(n: int, fps: float, camera: CameraConfig) -> list[int]:
    """Indices of the frames the stream reader would analyse out of ``n`` at ``fps``: its
    sampler at the profile's analytics fps (``streams.reader``)."""
    period = 1.0 / camera.profile.analytics_fps
    next_emit = -1.0
    out = []
    for i in range(n):
        rel = i / fps
        if rel < next_emit - 0.15 * period:  # as streams.reader._decode_units
            continue
        next_emit = max(next_emit + period, rel) if next_emit >= 0 else rel + period
        out.append(i)
    return out


def sample(frames: list[U8], fps: float, camera: CameraConfig) -> Iterator[tuple[int, float, U8]]:
    """``(index, media seconds, frame)`` the stream reader would analyse, resized to the
    profile's input size."""
    size = (camera.profile.input_width, camera.profile.input_height)
    for i in sampled(len(frames), fps, camera):
        f = frames[i]
        yield i, i / fps, np.ascontiguousarray(cv2.resize(f, size, interpolation=cv2.INTER_AREA))


def composite(bg: U8, plume: U8) -> U8:
    """``bg`` with the plume frame (smoke on black) blended in as grey smoke, its opacity
    the plume's brightness."""
    h, w = bg.shape[:2]
    pw = max(8, int(PLUME_WIDTH * w))
    ph = max(8, round(plume.shape[0] * pw / plume.shape[1]))
    p = cv2.resize(plume, (pw, ph), interpolation=cv2.INTER_AREA)
    alpha = cv2.cvtColor(p, cv2.COLOR_BGR2GRAY).astype(np.float32)[:, :, None] / 255.0
    x0 = int(PLUME_X * w - pw / 2)
    y1 = int(PLUME_BOTTOM * h)
    y0 = y1 - ph
    out = bg.astype(np.float32)
    # Clip the plume to the frame.
    ax0, ay0 = max(0, -x0), max(0, -y0)
    bx0, by0 = max(0, x0), max(0, y0)
    bx1, by1 = min(w, x0 + pw), min(h, y1)
    a = alpha[ay0 : ay0 + by1 - by0, ax0 : ax0 + bx1 - bx0]
    region = out[by0:by1, bx0:bx1]
    out[by0:by1, bx0:bx1] = region * (1 - a) + SMOKE_GREY * a
    return np.clip(out, 0, 255).astype(np.uint8)


def _camera(cam_id: str, sensitivity: str) -> CameraConfig:
    return CameraConfig.model_validate(
        {
            "id": cam_id,
            "url": f"{cam_id}.mp4",
            "latitude": 0,
            "longitude": 0,
            "detectors": ["fire_smoke"],
            "fire_smoke": {"sensitivity": sensitivity},
        }
    )


def rule_sets() -> dict[str, list[RuleConfig]]:
    """The fire and smoke rules of a config that lists none, and the demo's."""
    demo = [RuleConfig.model_validate(d) for d in demo_rules()]
    return {
        name: [r for r in rules if r.id in ("fire", "smoke")]
        for name, rules in (("default", default_rules()), ("demo", demo))
    }


def run_clip(
    det: TemporalFireSmoke, frames: list[U8], fps: float, camera: CameraConfig
) -> dict[str, Any]:
    """Run one clip like a camera; per rule set the alerts (class, media seconds, boxes)."""
    opts = camera.detector_options().get("fire_smoke", "")
    det.reset(camera.id)
    sets = rule_sets()
    cam_doc = camera.model_dump(mode="json", exclude_defaults=True)
    engines = {
        name: RulesEngine(
            CitysightConfig.model_validate(
                {"cameras": [cam_doc], "rules": [r.model_dump(mode="json") for r in rules]}
            )
        )
        for name, rules in sets.items()
    }
    alerts: dict[str, list[dict[str, Any]]] = {n: [] for n in engines}
    analysed = 0
    t_det = 0.0
    t0 = 1.7e9  # a fixed wall-clock origin: media seconds map to frame times
    for i, rel, f in sample(frames, fps, camera):
        c0 = time.perf_counter()
        out = (det.detect([f], [camera.id], [opts]) if opts else det.detect([f], [camera.id]))[0]
        t_det += time.perf_counter() - c0
        analysed += 1
        fr = FrameResult(
            camera_id=camera.id,
            frame_time=t0 + rel,
            frame_no=i,
            width=f.shape[1],
            height=f.shape[0],
            boxes=out.boxes,
            scores=out.scores,
            class_ids=out.class_ids,
            track_ids=np.full(len(out), -1, np.int64),
        )
        for name, eng in engines.items():
            for a in eng.evaluate([fr]).alerts:
                cls = int(ObjectClass.FIRE if a.kind.value == "fire" else ObjectClass.SMOKE)
                sel = out.class_ids == cls
                # Boxes back in the clip's own pixels (the profile resized the frame).
                sx = frames[0].shape[1] / f.shape[1]
                sy = frames[0].shape[0] / f.shape[0]
                boxes = out.boxes[sel] * np.asarray([sx, sy, sx, sy], np.float32)
                alerts[name].append(
                    {"kind": a.kind.value, "t": round(rel, 2), "frame": i, "boxes": boxes.tolist()}
                )
    return {"alerts": alerts, "analysed_frames": analysed, "detect_s": round(t_det, 2)}


def house6(det: TemporalFireSmoke, videos: Path, sensitivity: str) -> dict[str, Any]:
    """First fire alert on the FURG clip, and whether it is on the labelled flame."""
    frames, fps = read_frames(videos / FIRE_CLIP)
    labels = json.loads((videos / "fire_furg_house6.boxes.json").read_text())["frames"]
    first_flame = min(int(k) for k, v in labels.items() if v) / fps
    res = run_clip(det, frames, fps, _camera("house6", sensitivity))
    out: dict[str, Any] = {
        "seconds": round(len(frames) / fps, 1),
        "flame_visible_s": round(first_flame, 2),
        "analysed_frames": res["analysed_frames"],
    }
    for name, alerts in res["alerts"].items():
        fire = [a for a in alerts if a["kind"] == "fire"]
        on_flame = None
        for a in fire:
            lab = np.asarray(
                [[x, y, x + w, y + h] for x, y, w, h in labels.get(str(a["frame"]), [])],
                np.float32,
            ).reshape(-1, 4)
            b = np.asarray(a["boxes"], np.float32).reshape(-1, 4)
            if len(lab) and len(b) and float(box_iou(b, lab).max()) > 0:
                on_flame = a
                break
        out[name] = {
            "fire_alerts": len(fire),
            "first_fire_alert_after_flame_s": (
                round(fire[0]["t"] - first_flame, 2) if fire else None
            ),
            "first_alert_on_labelled_flame": bool(fire) and on_flame is fire[0],
            "first_alert_on_flame_after_flame_s": (
                round(on_flame["t"] - first_flame, 2) if on_flame else None
            ),
        }
    return out


def no_fire_clips(videos: Path) -> list[Path]:
    """Every clip of ``videos`` without fire or smoke."""
    return sorted(
        p
        for p in videos.iterdir()
        if p.suffix in (".mp4", ".gif") and p.name not in (FIRE_CLIP, PLUME_CLIP)
    )


def _rate(alerts: int, hours: float) -> dict[str, Any]:
    return {
        "alerts": alerts,
        "per_camera_hour": round(alerts / hours, 1) if hours else None,
        "upper95_per_camera_hour": round(poisson_upper95(alerts) / hours, 1) if hours else None,
    }


def false_alarms(det: TemporalFireSmoke, videos: Path, sensitivity: str) -> dict[str, Any]:
    """Fire and smoke alerts on the no-fire clips, per clip and per group."""
    per: list[dict[str, Any]] = []
    for clip in no_fire_clips(videos):
        frames, fps = read_frames(clip)
        res = run_clip(det, frames, fps, _camera("fa-" + clip.stem, sensitivity))
        row: dict[str, Any] = {
            "video": clip.name,
            "seconds": round(len(frames) / fps, 1),
            "analysed_frames": res["analysed_frames"],
            "designed_on": clip.name in DESIGNED_ON,
            "detect_s": res["detect_s"],
        }
        for name, alerts in res["alerts"].items():
            row[name] = {
                "fire": sum(a["kind"] == "fire" for a in alerts),
                "smoke": sum(a["kind"] == "smoke" for a in alerts),
                "at_s": [a["t"] for a in alerts],
            }
        per.append(row)
    out: dict[str, Any] = {"clips": per}
    for group, rows in (
        ("all", per),
        ("held_out", [r for r in per if not r["designed_on"]]),
    ):
        hours = sum(r["seconds"] for r in rows) / 3600
        g: dict[str, Any] = {"clips": len(rows), "hours": round(hours, 4)}
        for name in rule_sets():
            g[name] = {
                "fire_smoke": _rate(sum(r[name]["fire"] + r[name]["smoke"] for r in rows), hours),
                "fire": _rate(sum(r[name]["fire"] for r in rows), hours),
                "smoke": _rate(sum(r[name]["smoke"] for r in rows), hours),
            }
        out[group] = g
    return out


def composites(det: TemporalFireSmoke, videos: Path, sensitivity: str) -> dict[str, Any]:
    """The synthetic smoke events: one per distinct no-fire clip."""
    plume, pfps = read_frames(videos / PLUME_CLIP)
    plume_s = PLUME_LOOPS * len(plume) / pfps
    per: list[dict[str, Any]] = []
    for clip in no_fire_clips(videos):
        if clip.name in NOT_COMPOSITED:
            continue
        bg, fps = read_frames(clip, loop_to_s=ONSET_S + plume_s)
        n = math.ceil((ONSET_S + plume_s) * fps)
        cam = _camera("synth-" + clip.stem, sensitivity)
        frames = list(bg[:n])
        for i in sampled(n, fps, cam):  # only the frames analysed need the plume
            t = i / fps
            if t >= ONSET_S:
                frames[i] = composite(bg[i], plume[int((t - ONSET_S) * pfps) % len(plume)])
        res = run_clip(det, frames, fps, cam)
        row: dict[str, Any] = {"background": clip.name, "plume_s": round(plume_s, 1)}
        for name, alerts in res["alerts"].items():
            smoke = [a for a in alerts if a["kind"] == "smoke" and a["t"] >= ONSET_S]
            row[name] = {
                "detected": bool(smoke),
                "first_smoke_alert_after_onset_s": (
                    round(smoke[0]["t"] - ONSET_S, 2) if smoke else None
                ),
                "alerts_before_onset": sum(a["t"] < ONSET_S for a in alerts),
                "fire_alerts_during_plume": sum(
                    a["kind"] == "fire" and a["t"] >= ONSET_S for a in alerts
                ),
            }
        per.append(row)
    out: dict[str, Any] = {"synthetic": True, "onset_s": ONSET_S, "events": per}
    for name in rule_sets():
        found = [r[name] for r in per if r[name]["detected"]]
        times = sorted(r["first_smoke_alert_after_onset_s"] for r in found)
        out[name] = {
            "events": len(per),
            "detected": len(found),
            "median_first_alert_s": times[len(times) // 2] if times else None,
            "max_first_alert_s": times[-1] if times else None,
        }
    return out


def _fire_rule(rules: list[RuleConfig]) -> RuleConfig:
    (fire,) = [r for r in rules if r.id == "fire"]
    return fire


def table(res: dict[str, Any]) -> str:
    """Markdown tables of the figures (the default rules; the demo rules in the JSON)."""
    lines = [
        "Rules of a config that lists none (3 of 5 frames, score ≥ "
        f"{_fire_rule(default_rules()).min_score:g}, 300 s cooldown); "
        f"{res['analytics_fps']:g} analysed frames/s, frames at {res['input_size']}.",
        "",
        "| sensitivity | house6 first fire alert after flame (on the flame?) | "
        "no-fire alerts/camera-hour, all clips (95 % bound) | held-out clips (95 % bound) | "
        "synthetic smoke events found | median / max s to alert |",
        "|---|---|---|---|---|---|",
    ]
    for sens, r in res["sensitivity"].items():
        h = r["house6"]["default"]
        fa, ho = r["false_alarms"]["all"], r["false_alarms"]["held_out"]
        c = r["composites"]["default"]
        lines.append(
            f"| {sens} | {h['first_fire_alert_after_flame_s']} s "
            f"({'yes' if h['first_alert_on_labelled_flame'] else 'no'}) | "
            f"{fa['default']['fire_smoke']['alerts']} in {fa['hours'] * 60:.1f} min: "
            f"{fa['default']['fire_smoke']['per_camera_hour']} "
            f"(≤ {fa['default']['fire_smoke']['upper95_per_camera_hour']}) | "
            f"{ho['default']['fire_smoke']['alerts']} in {ho['hours'] * 60:.1f} min: "
            f"{ho['default']['fire_smoke']['per_camera_hour']} "
            f"(≤ {ho['default']['fire_smoke']['upper95_per_camera_hour']}) | "
            f"{c['detected']} of {c['events']} | {c['median_first_alert_s']} / "
            f"{c['max_first_alert_s']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fire_det.events", description=__doc__)
    ap.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    ap.add_argument("--videos", type=Path, default=SHARED / "data" / "videos")
    ap.add_argument(
        "--sensitivity", nargs="+", default=["low", "normal", "high"], help="presets to measure"
    )
    ap.add_argument("--skip-composites", action="store_true")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--json", action="store_true", help="print the JSON, not the table")
    args = ap.parse_args(argv)
    if not (args.videos / FIRE_CLIP).is_file():
        print(f"error: {args.videos / FIRE_CLIP} not found", file=sys.stderr)
        return 2
    det = TemporalFireSmoke(NetFireSmoke(args.model))
    cam = _camera("x", "normal")
    res: dict[str, Any] = {
        "model": str(
            args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model
        ),
        "analytics_fps": cam.profile.analytics_fps,
        "input_size": [cam.profile.input_width, cam.profile.input_height],
        "designed_on": list(DESIGNED_ON),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "sensitivity": {},
    }
    for sens in args.sensitivity:
        r: dict[str, Any] = {
            "house6": house6(det, args.videos, sens),
            "false_alarms": false_alarms(det, args.videos, sens),
        }
        if not args.skip_composites:
            r["composites"] = composites(det, args.videos, sens)
        res["sensitivity"][sens] = r
    emit(res, args.out, as_json=args.json, table=table, markdown=not args.skip_composites)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
