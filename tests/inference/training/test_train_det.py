"""train_det: assignment, a 1-epoch run, and the existing ``yolo`` tier reading its export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from inference.training.train_det import STRIDE, TinyDet, assign, giou_loss, main  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from fire_smoke_tiny_sets import make_sets  # noqa: E402


def test_assign_centre_cells() -> None:
    centres = TinyDet(2, 64).centres((4, 4)).numpy()
    cls_t, box_t = assign(np.array([[0, 0, 32, 32, 1]], np.float32), centres, 2)
    assert cls_t[0].sum() == 0
    pos = cls_t[1] > 0
    assert pos.sum() >= 1
    np.testing.assert_allclose(box_t[pos][0], [0, 0, 32, 32])
    assert np.isnan(box_t[~pos]).all()


def test_output_layout_and_giou() -> None:
    m = TinyDet(2, 64).eval()
    out = m(torch.zeros(3, 3, 64, 64))
    assert out.shape == (3, 6, (64 // STRIDE) ** 2)
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert float(giou_loss(b, b)) < 1e-5


def test_one_epoch_export_loads_in_yolo_tier(tmp_path: Path) -> None:
    fire, smoke = make_sets(tmp_path)
    out = tmp_path / "models" / "fire_smoke.onnx"
    args = ["--data", str(fire), "--data", str(smoke), "--out", str(out)]
    assert main([*args, "--epochs", "1", "--size", "64", "--batch", "2"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["layout"] == "yolov8" and meta["size"] == 64
    assert meta["train_images"] == 3  # the null-box fire image is left out

    from inference.detectors.base import load_detector

    det = load_detector("fire_smoke", out.parent, ["yolo"])
    assert det.tier == "yolo"
    assert len(det.detect([np.zeros((48, 80, 3), np.uint8)], ["cam"])) == 1
