"""``citysight eval --data DIR --json``: detector accuracy on labelled sets.

Prints one JSON object keyed by task (``faces``, ``plates``, ``plate_text``, ``fire``,
``smoke``), each with ``precision``, ``recall``, ``f1`` (``text_exact`` for plates and
plate crops) and the ``tier`` used. ``--all-tiers`` adds every tier's numbers under
``tiers`` and false vending alerts per camera-hour of the no-vending street clips
(``vending_false_alarms``); ``--false-alarms`` adds fire/smoke alarms per hour of street video.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.eval.dataset import TASKS, DatasetError, available_tasks
from benchmarks.eval.false_alarms import street_false_alarms, video_alarms
from benchmarks.eval.runner import TASK_DETECTOR, run_task
from benchmarks.eval.vending_false_alarms import eval_section as vending_eval_section
from inference.detectors.base import DetectorLoadError, available_tiers, load_detector

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", ROOT.parent / "shared"))
DEFAULT_DATA = SHARED / "data" / "eval"
STREET_VIDEOS = ("street-720p.mp4", "street_intel_*.mp4")
FIRE_VIDEO = "fire_furg_house6.mp4"


def default_models_dir() -> Path:
    """``model_repo/files`` when it holds ONNX files, else ``../shared/models``."""
    local = ROOT / "model_repo" / "files"
    if local.is_dir() and any(local.glob("*.onnx")):
        return local
    return SHARED / "models"


def street_videos(data: Path) -> list[Path]:
    """Ordinary street clips next to the eval dir (``../videos``)."""
    vids = data.parent / "videos"
    return sorted({p for pat in STREET_VIDEOS for p in vids.glob(pat)})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="citysight eval", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="eval dir: one folder per task with labels.json",
    )
    p.add_argument("--models", type=Path, default=None, help="model files dir")
    p.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    p.add_argument(
        "--tier",
        action="append",
        default=[],
        metavar="DETECTOR=TIER",
        help="use this tier (e.g. face=haar, plate=ocr_det); repeatable",
    )
    p.add_argument("--all-tiers", action="store_true", help="also score every tier")
    p.add_argument("--limit", type=int, default=None, help="images per task (fixed subset)")
    p.add_argument(
        "--false-alarms",
        action="store_true",
        help="fire/smoke alarms per hour on ../videos street clips",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return p


def evaluate(
    data: Path,
    models: Path,
    tasks: list[str],
    tiers: dict[str, str],
    all_tiers: bool = False,
    limit: int | None = None,
    false_alarms: bool = False,
) -> dict[str, Any]:
    """Score ``tasks``; see the module docstring for the shape of the result."""
    result: dict[str, Any] = {}
    for task in tasks:
        detector = TASK_DETECTOR[task]
        try:
            result[task] = run_task(data, task, models, tiers.get(detector), limit)
        except (DatasetError, DetectorLoadError, FileNotFoundError) as exc:
            result[task] = {"error": str(exc)}
            continue
        if all_tiers and task != "plate_text":
            per: dict[str, Any] = {}
            for tier in available_tiers(detector):
                try:
                    per[tier] = run_task(data, task, models, tier, limit)
                except DetectorLoadError as exc:
                    per[tier] = {"error": str(exc)}
            result[task]["tiers"] = per
    if all_tiers:
        result["vending_false_alarms"] = vending_eval_section(models, data.parent / "videos")
    if false_alarms:
        vids = street_videos(data)
        names = [tiers["fire_smoke"]] if "fire_smoke" in tiers else available_tiers("fire_smoke")
        fa: dict[str, Any] = {}
        for tier in names:
            try:
                det = load_detector("fire_smoke", models, [tier])
            except DetectorLoadError as exc:
                fa[tier] = {"error": str(exc)}
                continue
            fa[tier] = street_false_alarms(det, vids)
            fire_clip = data.parent / "videos" / FIRE_VIDEO
            if fire_clip.is_file():
                # The other side of the trade-off: how often the same settings see real fire.
                det = load_detector("fire_smoke", models, [tier])
                fa[tier]["fire_video"] = video_alarms(det, fire_clip)
        result["street_false_alarms"] = fa
    return result


def _table(result: dict[str, Any]) -> str:
    lines = [f"{'task':<12}{'tier':<14}{'P':>8}{'R':>8}{'F1':>8}{'text':>8}"]
    for task, r in result.items():
        if task not in TASKS:
            continue
        rows = [(r.get("tier", "-"), r)] + [(t, v) for t, v in r.get("tiers", {}).items()]
        for tier, v in rows:
            if "error" in v:
                lines.append(f"{task:<12}{tier:<14}  error: {v['error']}")
                continue
            text = f"{v['text_exact']:>8.3f}" if "text_exact" in v else f"{'':>8}"
            skipped = len(v.get("skipped_images", []))
            lines.append(
                f"{task:<12}{tier:<14}{v['precision']:>8.3f}{v['recall']:>8.3f}"
                f"{v['f1']:>8.3f}{text}"
                + (f"  ({skipped} unreadable images left out)" if skipped else "")
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad arguments or data)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tiers: dict[str, str] = {}
    for t in args.tier:
        det, sep, tier = t.partition("=")
        if not sep or det not in TASK_DETECTOR.values():
            print(f"citysight eval: bad --tier {t!r} (want DETECTOR=TIER)", file=sys.stderr)
            return 2
        if tier not in available_tiers(det):
            print(
                f"citysight eval: unknown tier {tier!r} of {det}; known: {available_tiers(det)}",
                file=sys.stderr,
            )
            return 2
        tiers[det] = tier
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        print(f"citysight eval: unknown task(s) {bad}; known: {list(TASKS)}", file=sys.stderr)
        return 2
    if not args.data.is_dir():
        print(f"citysight eval: no eval dir at {args.data}", file=sys.stderr)
        return 2
    present = set(available_tasks(args.data))
    tasks = [t for t in tasks if t in present]
    if not tasks:
        print(f"citysight eval: no labels.json for any task under {args.data}", file=sys.stderr)
        return 2
    models = args.models or default_models_dir()
    result = evaluate(
        args.data, models, tasks, tiers, args.all_tiers, args.limit, args.false_alarms
    )
    text = json.dumps(result, ensure_ascii=False, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text if args.json else _table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
