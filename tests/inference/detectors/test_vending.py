"""Vending tiers and the stationary-foreground cue."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from citysight.contracts import ObjectClass
from inference.detectors.base import load_detector
from inference.detectors.stationary import StationaryCue


@pytest.mark.parametrize("tier", ["picodet", "yolox", "hog"])
def test_vending_finds_person(models_dir: Path, data_dir: Path, tier: str) -> None:
    img = cv2.imread(str(data_dir / "eval/faces/images/faces__skimage__astronaut.png"))
    det = load_detector("vending", models_dir, [tier])
    out = det.detect([img], ["cam"])[0]
    assert (out.class_ids == ObjectClass.PERSON).any()


def test_stationary_cue_reports_new_object_that_stays() -> None:
    cue = StationaryCue()
    bg = np.full((240, 320, 3), 100, np.uint8)
    for _ in range(20):
        boxes, _ = cue(bg, "cam")
    assert len(boxes) == 0
    stall = bg.copy()
    stall[100:160, 100:180] = 220
    for _ in range(20):
        boxes, _ = cue(stall, "cam")
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], [100, 100, 180, 160], atol=3)
    boxes, _ = cue(stall, "other-cam")  # state is per camera
    assert len(boxes) == 0
