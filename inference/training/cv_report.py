"""Held-out report: cross-validated ``cnn`` scores next to the classical tier on the same images.

Usage::

    python -m inference.training.train_cls --data ../shared/data/eval/fire \\
        --data ../shared/data/eval/smoke --cv 5 --epochs 25 --report cv.json
    python -m inference.training.cv_report --cv cv.json \\
        --out benchmarks/results/eval_fire_smoke_cls.json

Every image gets the score of the fold model that never saw its source group, so the
``cnn`` numbers are held-out; the classical tier runs on each image as a fresh camera
(exactly as ``citysight eval`` does). Metrics are image-level, per task, over the images
whose label of that class is known (the fire set's and the smoke set's images).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from citysight.contracts import ObjectClass
from inference.detectors.common import read_image
from inference.detectors.fire_smoke import ClassicalFireSmoke
from inference.training.datasets import CLASSES, load
from inference.training.metrics import prf


def classical_predictions(files: list[Path]) -> dict[str, dict[str, bool]]:
    """Classical tier's image-level fire/smoke decision for every file (fresh camera each)."""
    det = ClassicalFireSmoke()
    out = {}
    for i, f in enumerate(files):
        img = read_image(f)
        res = det.detect([img], [f"cv-{i}"])[0]
        out[str(f)] = {
            "fire": bool((res.class_ids == int(ObjectClass.FIRE)).any()),
            "smoke": bool((res.class_ids == int(ObjectClass.SMOKE)).any()),
        }
    return out


def build(cv_report: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Per-task and per-group metrics of both tiers on the cross-validated images."""
    samples = {str(s.path): s for s in load(cv_report["data"], CLASSES)}
    preds = cv_report["cv"]["predictions"]
    classical = classical_predictions([Path(p["file"]) for p in preds])
    result: dict[str, Any] = {}
    for j, cls in enumerate(CLASSES):
        rows = [p for p in preds if cls in samples[p["file"]].known]
        truth = [samples[p["file"]].has(cls) for p in rows]
        cnn = [p["scores"][j] >= threshold for p in rows]
        base = [classical[p["file"]][cls] for p in rows]
        groups: dict[str, dict[str, Any]] = {}
        for p, t, c, b in zip(rows, truth, cnn, base, strict=True):
            g = groups.setdefault(
                p["group"],
                {"fold": p["fold"], "images": 0, "positive": 0, "cnn_hits": 0, "classical_hits": 0},
            )
            g["images"] += 1
            g["positive"] += int(t)
            g["cnn_hits"] += int(c)
            g["classical_hits"] += int(b)
        result[cls] = {
            "images": len(rows),
            "cnn": prf(cnn, truth),
            "classical": prf(base, truth),
            "per_group": groups,
        }
    return result


def _repeat(path: Path) -> dict[str, Any]:
    """Seed and held-out cnn metrics of another CV run."""
    rep = json.loads(path.read_text())
    metrics = rep["cv"]["metrics"]
    return {
        "seed": rep["config"]["seed"],
        "cnn": {c: {k: metrics[c][k] for k in ("precision", "recall", "f1")} for c in metrics},
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv", required=True, help="train_cls --cv --report JSON")
    ap.add_argument("--out", required=True, help="result JSON to write")
    ap.add_argument("--note", default="", help="free text stored in the result")
    ap.add_argument(
        "--repeat",
        action="append",
        default=[],
        help="further CV reports (other seeds) whose cnn metrics are listed as repeats",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cv_report = json.loads(Path(args.cv).read_text())
    cfg = cv_report["config"]
    tasks = build(cv_report, float(cfg["threshold"]))
    doc = {
        "what": "fire/smoke cnn tier (train_cls) vs classical tier, held-out, image-level",
        "protocol": (
            f"group-aware stratified {cv_report['cv']['k']}-fold cross-validation over the "
            "merged eval sets; a group is a video/collection (file name without frame number), "
            "so no frame of a held-out video was trained on; fixed epoch count, no early "
            "stopping or threshold tuning on held-out folds. Classical tier run on the same "
            "images as fresh cameras (its thresholds were tuned on these dev sets, so its "
            "numbers are in-sample)."
        ),
        "data": cv_report["data"],
        "config": cfg,
        "params": cv_report["params"],
        "tasks": tasks,
        "repeats": [_repeat(Path(r)) for r in args.repeat],
        "note": args.note,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    for cls, r in tasks.items():
        print(cls, "cnn", r["cnn"], "classical", r["classical"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
