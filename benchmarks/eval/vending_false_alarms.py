"""False vending alerts per camera-hour on street clips with no street vending in them.

Each clip is one camera. Its frames are sampled at the camera analysis rate
(:class:`citysight.config.CameraProfile` default), resized to the camera input size, and go
through what a deployment runs: the vending detector tier (network + stationary cue), the
tracker (:class:`inference.tracker.TrackerBank`) and the rules engine
(:class:`serve_app.rules.engine.RulesEngine`) with the reference ``vending`` dwell rule, in
both of its timings (:func:`citysight.rulesets.demo_rules` and
:func:`citysight.rulesets.default_rules`). The whole frame is a ``no_vending`` zone (the
worst case: any vending-class object anywhere counts). Every alert counts as false: there
is no vending in these clips.

The clips are minutes long, so a zero bounds the rate only loosely: the 95 % upper bound of
a Poisson rate with ``k`` events in ``h`` hours is reported next to each rate (3.0 / h for
zero events, exactly 2.996 / h). Clips are never looped: a replay is not independent evidence.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.eval import scoring
from citysight.config import CameraConfig, CameraProfile, CitysightConfig, RuleConfig
from citysight.contracts import FrameBatch, ObjectClass
from citysight.rulesets import default_rules, demo_rules
from inference.detectors.base import DetectorBackend, DetectorLoadError, load_detector
from inference.tracker import TrackerBank
from serve_app.rules.engine import RulesEngine

logger = logging.getLogger(__name__)

#: Clips that are not street scenes without vending (fire footage, smoke composites).
EXCLUDED_PREFIXES = ("fire_", "pyronear_")
VIDEO_SUFFIXES = (".mp4", ".gif")
#: Same scene, other resolution: run and listed, but not counted twice in the hours.
DUPLICATES = {"street-1080p.mp4": "street-720p.mp4"}
#: Frame times start here (any fixed epoch: the vending rule has no schedule).
T0 = 1_800_000_000.0


class ClipError(ValueError):
    """A clip cannot be decoded (named in the message)."""


def no_vending_clips(videos_dir: Path) -> list[Path]:
    """Every clip under ``videos_dir`` except fire and smoke footage, sorted by name."""
    return sorted(
        p
        for p in videos_dir.iterdir()
        if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(EXCLUDED_PREFIXES)
    )


def poisson_upper(events: int) -> float:
    """The exact one-sided 95 % upper bound of a Poisson mean after ``events`` events (the
    one every false-alarm figure uses, :func:`benchmarks.eval.scoring.poisson_upper95`)."""
    return scoring.poisson_upper95(events)


def poisson_upper95(events: int, hours: float) -> float | None:
    """The 95 % upper bound of a rate per hour after ``events`` in ``hours`` (None: no hours)."""
    if hours <= 0:
        return None
    return poisson_upper(events) / hours


def sampled_frames(
    path: Path, fps: float, size: tuple[int, int]
) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
    """``(clip time s, BGR frame resized to size)`` at about ``fps``, decoded with PyAV.

    Raises:
        ClipError: the clip cannot be opened or has no video stream.
    """
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises several error types for unreadable files
        raise ClipError(f"cannot open video {path}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise ClipError(f"no video stream in {path}")
        next_t = 0.0
        for frame in container.decode(video=0):
            t = float(frame.time) if frame.time is not None else next_t
            if t + 1e-6 < next_t:
                continue
            next_t = t + 1.0 / fps
            bgr = frame.to_ndarray(format="bgr24")
            yield t, np.asarray(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), np.uint8)


def _vending_rule(rules: list[Any]) -> RuleConfig:
    for r in rules:
        rc = r if isinstance(r, RuleConfig) else RuleConfig.model_validate(r)
        if rc.id == "vending":
            return rc
    raise LookupError("no vending rule in the reference rules")


def _track_class(res: Any, subject: str) -> str:
    """The class name of the track an alert is about (``track:N``), or ``""``."""
    if not subject.startswith("track:"):
        return ""
    hit = np.flatnonzero(res.track_ids == int(subject.split(":", 1)[1]))
    return ObjectClass(int(res.class_ids[hit[0]])).name.lower() if len(hit) else ""


def rule_sets() -> dict[str, RuleConfig]:
    """The reference vending rule in its demo and production timings, and variants.

    ``demo`` (8 s dwell) and ``default`` (300 s) are what runs; ``dwell_30`` and
    ``dwell_60`` are the demo rule with a longer dwell (the clips are shorter than 300 s, so
    the production timing alone can only ever count zero); ``person_counted`` is the demo
    rule counting a lingering person as vending, as the reference rule did before
    (kept to show what that cost).
    """
    demo = _vending_rule(demo_rules())

    def variant(**changes: Any) -> RuleConfig:
        return RuleConfig.model_validate({**demo.model_dump(), **changes})

    return {
        "demo": demo,
        "dwell_30": variant(dwell_s=30.0),
        "dwell_60": variant(dwell_s=60.0),
        "default": _vending_rule(default_rules()),
        "person_counted": variant(classes=["person", *demo.classes]),
    }


def clip_alerts(
    det: DetectorBackend,
    path: Path,
    rules: dict[str, RuleConfig],
    profile: CameraProfile | None = None,
) -> dict[str, Any]:
    """Run one clip through ``det``, the tracker and each rule; the alerts of each.

    Args:
        det: A vending detector tier (fresh state is not required: the clip's camera id
            is new to it).
        path: The clip.
        rules: Name → vending rule; one rules engine each, fed the same tracked results.
        profile: Analysis rate and input size (default: the camera defaults).
    """
    profile = profile or CameraProfile()
    cam = f"fa-vending-{path.stem}"
    zone = {"id": "all", "type": "no_vending", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}
    camera = CameraConfig.model_validate(
        {
            "id": cam,
            "url": str(path),
            "latitude": 0.0,
            "longitude": 0.0,
            "detectors": ["vending"],
            "zones": [zone],
        }
    )
    engines = {
        name: RulesEngine(CitysightConfig(cameras=[camera], rules=[rule]))
        for name, rule in rules.items()
    }
    alerts: dict[str, list[dict[str, Any]]] = {name: [] for name in rules}
    trackers = TrackerBank()
    size = (profile.input_width, profile.input_height)
    frames = 0
    last_t = 0.0
    counts: dict[int, int] = {}
    for frames, (t, img) in enumerate(sampled_frames(path, profile.analytics_fps, size), 1):
        last_t = t
        batch = FrameBatch(
            frames=[img],
            camera_ids=[cam],
            frame_nos=[frames],
            frame_times=[T0 + t],
            detectors=[frozenset({"vending"})],
        )
        out = det.detect(batch.frames, batch.camera_ids)[0]
        for c in out.class_ids.tolist():
            counts[c] = counts.get(c, 0) + 1
        res = trackers.frame_result(batch, 0, out)
        for name, eng in engines.items():
            for a in eng.evaluate([res]).alerts:
                alerts[name].append(
                    {
                        "t_s": round(t, 2),
                        "class": _track_class(res, a.subject),
                        "summary": a.summary,
                    }
                )
    seconds = last_t + 1.0 / profile.analytics_fps if frames else 0.0
    return {
        "video": path.name,
        "seconds": round(seconds, 2),
        "analysed_frames": frames,
        "detections_per_class": {str(k): v for k, v in sorted(counts.items())},
        "alerts": {name: len(v) for name, v in alerts.items()},
        "alert_times": alerts,
    }


def vending_false_alarms(
    detectors: dict[str, DetectorBackend],
    clips: list[Path],
    profile: CameraProfile | None = None,
) -> dict[str, Any]:
    """False vending alerts per camera-hour of each tier over ``clips``.

    Args:
        detectors: Tier name → loaded vending detector.
        clips: No-vending clips (one camera each).
        profile: Analysis rate and input size (default: the camera defaults).
    """
    profile = profile or CameraProfile()
    rules = rule_sets()
    out: dict[str, Any] = {
        "zone": "whole frame is a no_vending zone",
        "analytics_fps": profile.analytics_fps,
        "input": [profile.input_width, profile.input_height],
        "rules": {
            name: {"dwell_s": r.dwell_s, "cooldown_s": r.cooldown_s, "min_score": r.min_score}
            for name, r in rules.items()
        },
        "duplicates_not_counted": {k: v for k, v in DUPLICATES.items()},
        "tiers": {},
    }
    for tier, det in detectors.items():
        per = []
        for clip in clips:
            try:
                per.append(clip_alerts(det, clip, rules, profile))
            except ClipError as exc:
                logger.warning("vending false alarms: %s", exc)
                per.append({"video": clip.name, "error": str(exc)})
        counted = [p for p in per if "error" not in p and p["video"] not in DUPLICATES]
        hours = sum(p["seconds"] for p in counted) / 3600
        summary: dict[str, Any] = {"camera_hours": round(hours, 4), "clips": len(counted)}
        for name, rule in rules.items():
            k = sum(p["alerts"][name] for p in counted)
            up = poisson_upper95(k, hours)
            # An alert needs dwell_s of history: only the part of a clip after its first
            # dwell_s can raise one, so a zero over clips shorter than the dwell says nothing.
            eligible = sum(max(0.0, p["seconds"] - rule.dwell_s) for p in counted) / 3600
            up_eligible = poisson_upper95(k, eligible)
            summary[name] = {
                "alerts": k,
                "per_camera_hour": round(k / hours, 2) if hours else None,
                "upper95_per_camera_hour": round(up, 1) if up is not None else None,
                "eligible_camera_hours": round(eligible, 4),
                "upper95_per_eligible_camera_hour": (
                    round(up_eligible, 1) if up_eligible is not None else None
                ),
            }
        out["tiers"][tier] = {**summary, "videos": per}
    return out


#: Tiers compared by ``citysight eval --all-tiers`` (HOG is left out: no COCO objects, and
#: its multi-scale scan costs seconds per minute of video on a 2-core CPU).
EVAL_TIERS = ("picodet", "yolox")


def eval_section(
    models: Path, videos_dir: Path, tiers: tuple[str, ...] = EVAL_TIERS
) -> dict[str, Any]:
    """The ``vending_false_alarms`` section of ``citysight eval --all-tiers``.

    A tier that cannot load (its model file missing) is reported as ``{"error": ...}``.
    """
    if not videos_dir.is_dir():
        return {"error": f"no videos dir at {videos_dir}"}
    dets: dict[str, DetectorBackend] = {}
    errors: dict[str, Any] = {}
    for tier in tiers:
        try:
            dets[tier] = load_detector("vending", models, [tier])
        except DetectorLoadError as exc:
            errors[tier] = {"error": str(exc)}
    res = vending_false_alarms(dets, no_vending_clips(videos_dir))
    res["tiers"].update(errors)
    res["clips_are_short"] = (
        "minutes of video: a zero cannot show a rate of 1 per camera-hour or less; "
        "the upper bound is the result"
    )
    return res


def table(res: dict[str, Any]) -> str:
    """A Markdown table: alerts, rate and 95 % upper bound per tier and rule timing."""
    lines = [
        "| tier | rule timing | camera-hours | alerts | per camera-hour | 95 % upper bound "
        "| hours past the dwell | 95 % bound on those |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tier, v in res.get("tiers", {}).items():
        if "error" in v:
            lines.append(f"| {tier} | error: {v['error']} | | | | | | |")
            continue
        for name in res["rules"]:
            r = v[name]
            lines.append(
                f"| {tier} | {name} (dwell {res['rules'][name]['dwell_s']:g} s) | "
                f"{v['camera_hours']} | {r['alerts']} | {r['per_camera_hour']} | "
                f"{r['upper95_per_camera_hour']} | {r['eligible_camera_hours']} | "
                f"{r['upper95_per_eligible_camera_hour']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.eval.vending_false_alarms``: the section alone, to a JSON file."""
    import argparse

    from benchmarks.common.results import emit

    root = Path(__file__).resolve().parents[2]
    shared = root.parent / "shared"
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--models", type=Path, default=shared / "models")
    p.add_argument("--videos", type=Path, default=shared / "data" / "videos")
    p.add_argument("--tiers", default=",".join(EVAL_TIERS))
    p.add_argument(
        "--out", type=Path, default=root / "benchmarks" / "results" / "vending_false_alarms.json"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    tiers = tuple(t for t in args.tiers.split(",") if t)
    res = eval_section(args.models, args.videos, tiers)
    if "error" in res:
        print(res["error"], file=sys.stderr)
        return 2
    emit(res, args.out, as_json=args.json, table=table, markdown=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
