"""cv_report: held-out cnn scores and the classical tier on the same images (no torch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from inference.training.cv_report import main
from inference.training.datasets import load

sys.path.insert(0, str(Path(__file__).parent))
from fire_smoke_tiny_sets import make_sets


def test_cv_report(tmp_path: Path) -> None:
    fire, smoke = make_sets(tmp_path)
    samples = load([fire, smoke])
    preds = [
        {
            "file": str(s.path),
            "group": s.group,
            "fold": 0,
            "scores": [
                0.9 if s.has("fire") else 0.1,
                0.9 if s.path.name.startswith("neg") else 0.1,
            ],
        }
        for s in samples
    ]
    cv = {
        "data": [str(fire), str(smoke)],
        "config": {"threshold": 0.5},
        "params": 1,
        "cv": {"k": 2, "predictions": preds},
    }
    (tmp_path / "cv.json").write_text(json.dumps(cv))
    out = tmp_path / "res.json"
    m = {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "matched": 1}
    rep = {"config": {"seed": 1}, "cv": {"metrics": {"fire": m, "smoke": m}}}
    (tmp_path / "cv1.json").write_text(json.dumps(rep))
    args = ["--cv", str(tmp_path / "cv.json"), "--out", str(out)]
    assert main([*args, "--repeat", str(tmp_path / "cv1.json")]) == 0
    doc = json.loads(out.read_text())
    short = {"precision": 0.5, "recall": 1.0, "f1": 0.6667}
    assert doc["repeats"] == [{"seed": 1, "cnn": {"fire": short, "smoke": short}}]
    tasks = doc["tasks"]
    assert tasks["fire"]["images"] == 3 and tasks["smoke"]["images"] == 2
    assert tasks["fire"]["cnn"]["f1"] == 1.0
    assert tasks["smoke"]["cnn"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "matched": 0,
        "detections": 1,
        "labelled": 1,
    }
    assert set(tasks["fire"]["classical"]) >= {"precision", "recall", "f1"}
    assert tasks["fire"]["per_group"]["cama"]["cnn_hits"] == 2
