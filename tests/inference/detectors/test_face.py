"""Face tiers on real images of ../shared/data/eval/faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from citysight.contracts import ObjectClass
from inference.detectors.base import load_detector
from inference.detectors.common import box_iou


def _images(data_dir: Path, n: int) -> list[tuple]:
    d = data_dir / "eval" / "faces"
    labels = json.loads((d / "labels.json").read_text())["images"]
    step = max(1, len(labels) // n)
    return [(cv2.imread(str(d / im["file"])), im["objects"]) for im in labels[::step][:n]]


@pytest.mark.parametrize(("tier", "min_recall"), [("yunet", 0.8), ("yunet_n", 0.8), ("haar", 0.4)])
def test_face_tier_finds_labelled_faces(
    models_dir: Path, data_dir: Path, tier: str, min_recall: float
) -> None:
    det = load_detector("face", models_dir, [tier])
    assert det.tier == tier
    images = _images(data_dir, 6)
    found = total = 0
    for img, objs in images:
        out = det.detect([img], ["cam"])[0]
        assert (out.class_ids == ObjectClass.FACE).all()
        gt = [o["box"] for o in objs]
        total += len(gt)
        if len(out) and gt:
            found += int((box_iou(gt, out.boxes).max(axis=1) >= 0.5).sum())
    assert found / total >= min_recall


def test_corrupt_yunet_falls_back_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "yunet_s_640_640.onnx").write_bytes(b"not an onnx model" * 10)
    with caplog.at_level("WARNING"):
        det = load_detector("face", tmp_path)
    assert det.tier == "haar"  # yunet corrupt, yunet_n missing
    assert "yunet" in caplog.text and "unavailable" in caplog.text
