"""A short train_cls run on tiny synthetic images: splits, ONNX export, the cnn tier loads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from inference.training.datasets import Sample  # noqa: E402
from inference.training.train_cls import FireSmokeNet, group_folds, group_split, main  # noqa: E402


def _samples() -> list[Sample]:
    out = []
    for g in range(9):
        for f in range(3):
            cls = ["fire", "smoke", None][g % 3]
            boxes = [(cls, None)] if cls else []
            out.append(Sample(Path(f"v{g}_f{f:03d}.jpg"), boxes, {"fire", "smoke"}))
    return out


def test_group_folds_keep_groups_together() -> None:
    samples = _samples()
    folds = group_folds(samples, 3)
    for g in {s.group for s in samples}:
        assert len({f for s, f in zip(samples, folds, strict=True) if s.group == g}) == 1
    # Stratified: every fold holds one fire, one smoke and one negative group.
    for f in range(3):
        members = [s for s, x in zip(samples, folds, strict=True) if x == f]
        assert sum(s.has("fire") for s in members) == 3
        assert sum(s.has("smoke") for s in members) == 3
    train, val = group_split(samples, 0.34)
    assert not {samples[i].group for i in train} & {samples[i].group for i in val}
    assert sorted(train + val) == list(range(len(samples)))


def test_network_size() -> None:
    n = sum(p.numel() for p in FireSmokeNet().parameters())
    assert 100_000 <= n <= 300_000
    assert FireSmokeNet()(torch.zeros(2, 3, 64, 64)).shape == (2, 2)


def test_one_epoch_exports_onnx_for_cnn_tier(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fire_smoke_tiny_sets import make_sets

    fire, smoke = make_sets(tmp_path)
    # A few more frames so both sides of the split hold something.
    import cv2

    for i in range(4):
        cv2.imwrite(str(fire / "images" / f"camB_f{i:04d}.jpg"), np.full((24, 32, 3), 60, np.uint8))
    doc = json.loads((fire / "labels.json").read_text())
    doc["images"] += [{"file": f"images/camB_f{i:04d}.jpg", "objects": []} for i in range(4)]
    (fire / "labels.json").write_text(json.dumps(doc))
    out = tmp_path / "models" / "fire_smoke_cls.onnx"
    report = tmp_path / "report.json"
    args = ["--data", str(fire), "--data", str(smoke), "--out", str(out), "--epochs", "1"]
    assert main([*args, "--size", "32", "--batch", "4", "--report", str(report)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["classes"] == ["fire", "smoke"] and meta["size"] == 32
    assert meta["trained_on"] == [str(fire), str(smoke)]
    assert json.loads(report.read_text())["history"][0]["epoch"] == 1

    from inference.detectors.base import load_detector

    det = load_detector("fire_smoke", out.parent, ["cnn"])
    assert det.tier == "cnn"
    res = det.detect([np.zeros((48, 64, 3), np.uint8)], ["cam"])
    assert len(res) == 1
    assert main([*args, "--size", "32", "--batch", "4", "--cv", "2", "--report", str(report)]) == 0
    cv = json.loads(report.read_text())["cv"]
    assert len(cv["predictions"]) == 8 and set(cv["metrics"]) == {"fire", "smoke"}
