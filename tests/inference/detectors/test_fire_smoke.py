"""Classical fire/smoke cues on real fire images and negatives; YOLO decoding."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from citysight.contracts import ObjectClass
from inference.detectors.fire_smoke import ClassicalFireSmoke
from inference.detectors.yolo import YoloLayout, decode, yolox_grid


def _subset(data_dir: Path, task: str, positive: bool, n: int) -> list[np.ndarray]:
    d = data_dir / "eval" / task
    ims = [
        im
        for im in json.loads((d / "labels.json").read_text())["images"]
        if bool(im["objects"]) is positive
    ]
    step = max(1, len(ims) // n)
    return [cv2.imread(str(d / im["file"])) for im in ims[::step][:n]]


def test_fire_cue_on_real_images(data_dir: Path) -> None:
    det = ClassicalFireSmoke()
    pos = _subset(data_dir, "fire", True, 10)
    neg = _subset(data_dir, "fire", False, 10)
    hits = [
        bool((det.detect([f], [f"p{i}"])[0].class_ids == ObjectClass.FIRE).any())
        for i, f in enumerate(pos)
    ]
    false = [
        bool((det.detect([f], [f"n{i}"])[0].class_ids == ObjectClass.FIRE).any())
        for i, f in enumerate(neg)
    ]
    assert sum(hits) >= 7
    assert sum(false) <= 2


def test_fire_needs_flicker_once_a_camera_has_history() -> None:
    det = ClassicalFireSmoke()
    frame = np.full((240, 320, 3), 40, np.uint8)
    frame[80:160, 120:200] = (40, 160, 250)  # a static orange patch (a sign, not a flame)
    for _ in range(5):
        out = det.detect([frame], ["cam"])[0]
    assert not (out.class_ids == ObjectClass.FIRE).any()
    flames = frame.copy()
    for g in (200, 140, 200):  # flicker: the flame's brightness changes every frame
        flames[80:160, 120:200] = (40, g, 255)
        out = det.detect([flames], ["cam"])[0]
    assert (out.class_ids == ObjectClass.FIRE).any()


def _yolo_rows(n_cls: int) -> np.ndarray:
    rows = np.zeros((3, 5 + n_cls), np.float32)
    rows[0, :5] = (50, 50, 20, 20, 0.9)
    rows[0, 5 + 1] = 0.8
    rows[1, :5] = (52, 50, 20, 20, 0.9)  # overlaps row 0: suppressed
    rows[1, 5 + 1] = 0.7
    rows[2, :5] = (10, 10, 4, 4, 0.1)  # below threshold
    rows[2, 5] = 0.9
    return rows


@pytest.mark.parametrize(
    ("layout", "pred", "expect", "error"),
    [
        (YoloLayout.YOLOV5, _yolo_rows(2), [[40, 40, 60, 60]], None),
        (
            YoloLayout.YOLOV8,
            np.array(
                [[50, 52, 10], [50, 50, 10], [20, 20, 4], [20, 20, 4], [0, 0, 0.1], [0.8, 0.7, 0]],
                np.float32,
            ),
            [[40, 40, 60, 60]],
            None,
        ),
        (YoloLayout.YOLOV5, np.zeros((4,), np.float32), None, ValueError),
        (YoloLayout.YOLOX, np.zeros((5, 85), np.float32), None, ValueError),
    ],
)
def test_yolo_decode(
    layout: YoloLayout, pred: np.ndarray, expect: list | None, error: type[Exception] | None
) -> None:
    if error:
        with pytest.raises(error):
            decode(pred, layout, 416, 0.3, 0.45)
        return
    boxes, _, cls = decode(pred, layout, 640, 0.3, 0.45)
    np.testing.assert_allclose(boxes, expect, atol=1e-4)
    assert cls.tolist() == [1]


def test_yolox_grid_decode() -> None:
    grid, _ = yolox_grid(416)
    assert len(grid) == 3549
    pred = np.zeros((3549, 85), np.float32)
    pred[:, 4] = -1  # sigmoid already applied in the export: 0 scores
    pred[0, :6] = (0.5, 0.5, 0.0, 0.0, 0.9, 0.9)  # cell (0,0) of stride 8
    boxes, _, cls = decode(pred, YoloLayout.YOLOX, 416, 0.3, 0.45)
    np.testing.assert_allclose(boxes, [[0, 0, 8, 8]], atol=1e-4)
    assert cls.tolist() == [0]


def _textured(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = cv2.GaussianBlur(rng.integers(60, 160, (240, 320), dtype=np.uint8), (3, 3), 0)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def test_smoke_cue_on_growing_haze_but_not_static_scene() -> None:
    det = ClassicalFireSmoke()
    bg = _textured()
    for _ in range(10):
        out = det.detect([bg], ["cam"])[0]
    assert len(out) == 0
    yy, xx = np.mgrid[:240, :320]
    haze = cv2.GaussianBlur(bg, (15, 15), 0).astype(np.float32) * 0.3 + 0.7 * 170
    for i in range(12):  # a semi-transparent plume that grows and blurs what is behind it
        disk = (((xx - 160) ** 2 + (yy - 150) ** 2) < (40 + 5 * i) ** 2).astype(np.float32)
        alpha = cv2.GaussianBlur(disk, (31, 31), 0)[:, :, None] * 0.6
        out = det.detect([(bg * (1 - alpha) + haze * alpha).astype(np.uint8)], ["cam"])[0]
    smoke = out.boxes[out.class_ids == ObjectClass.SMOKE]
    assert len(smoke) == 1
    x1, y1, x2, y2 = smoke[0]
    assert x1 < 160 < x2 and y1 < 150 < y2


def test_solid_grey_object_walking_by_is_not_smoke() -> None:
    det = ClassicalFireSmoke()
    bg = _textured(2)
    for _ in range(5):
        det.detect([bg], ["cam"])
    for i in range(12):
        frame = bg.copy()
        frame[60:200, 40 + 10 * i : 100 + 10 * i] = 128  # a grey coat, opaque, moving
        out = det.detect([frame], ["cam"])[0]
        assert not (out.class_ids == ObjectClass.SMOKE).any()


def test_smoke_only_cue_matches_the_full_tier_on_smoke_and_reports_no_fire() -> None:
    """``ClassicalFireSmoke(fire=False)`` (the trained tier's faint-smoke cue) gives the full
    tier's smoke boxes on video and never fire, on the demo's smoke and fire scenes."""
    from streams.synthetic.scenes import SCENES

    for scene_name in ("smoke", "fire"):
        scene = SCENES[scene_name]((640, 360), 5, 20.0)
        full, smoke_only = ClassicalFireSmoke(), ClassicalFireSmoke(fire=False)
        for i in range(0, 100, 3):
            f = np.ascontiguousarray(scene.draw(i)[:, :, ::-1])
            a, b = full.detect([f], ["c"])[0], smoke_only.detect([f], ["c"])[0]
            smoke = int(ObjectClass.SMOKE)
            assert not (b.class_ids == int(ObjectClass.FIRE)).any()
            np.testing.assert_array_equal(b.boxes, a.boxes[a.class_ids == smoke])
