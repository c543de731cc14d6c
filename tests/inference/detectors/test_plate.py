"""Plate tiers and grammar on real CCPD scenes and plate crops."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from citysight.plates import normalise_plate as normalize
from inference.detectors.base import load_detector
from inference.detectors.common import box_iou
from inference.detectors.ocr import TextRecognizer
from inference.detectors.plate import read_plate
from inference.detectors.plate_grammar import correct, is_valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("皖AY339S", True),
        ("皖AD22939", True),  # new energy, 8 characters
        ("粤B1234警", True),
        ("粤Z1234港", True),
        ("京A12345学", False),
        ("皖AI2345", False),  # no I
        ("AA12345", False),  # no province
        ("皖A1234", False),  # too short
    ],
)
def test_plate_grammar(text: str, valid: bool) -> None:
    assert is_valid(text) is valid


@pytest.mark.parametrize(
    ("raw", "fixed"),
    [
        ("皖A·VQ225", "皖AVQ225"),
        ("#皖A 12O45", "皖A12045"),
        ("皖429C52", "皖A29C52"),
        ("hello", ""),
        ("皖A1234567", ""),  # 9 plate characters: unreadable, not cut to a guess
    ],
)
def test_plate_correction(raw: str, fixed: str) -> None:
    assert correct(raw) == fixed
    assert normalize("皖A·B 12-3") == "皖AB123"


def test_reads_real_plate_crops(data_dir: Path) -> None:
    d = data_dir / "eval" / "plate_text"
    labels = json.loads((d / "labels.json").read_text())["images"]
    rec = TextRecognizer()
    sample = labels[::25]
    ok = sum(
        read_plate(rec, cv2.imread(str(d / im["file"])))[0] == im["objects"][0]["text"]
        for im in sample
    )
    assert ok / len(sample) >= 0.9


def test_y5fu_detects_and_reads_scene_plates(models_dir: Path, data_dir: Path) -> None:
    det = load_detector("plate", models_dir, ["y5fu"])
    d = data_dir / "eval" / "plates"
    labels = json.loads((d / "labels.json").read_text())["images"][:5]
    read = 0
    for im in labels:
        out = det.detect([cv2.imread(str(d / im["file"]))], ["cam"])[0]
        gt = im["objects"][0]
        assert len(out) >= 1
        best = int(box_iou([gt["box"]], out.boxes)[0].argmax())
        assert box_iou([gt["box"]], out.boxes)[0, best] >= 0.5
        assert len(out.extra["plate_text"]) == len(out) == len(out.extra["plate_score"])
        read += out.extra["plate_text"][best] == gt["text"]
    assert read >= 4


def test_ocr_det_fallback_reads_a_scene_plate(
    models_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    det = load_detector("plate", tmp_path)  # no y5fu files here
    assert det.tier == "ocr_det"
    d = data_dir / "eval" / "plates"
    im = json.loads((d / "labels.json").read_text())["images"][4]
    out = det.detect([cv2.imread(str(d / im["file"]))], ["cam"])[0]
    assert im["objects"][0]["text"] in out.extra["plate_text"]


def _as_double_layer(crop: np.ndarray) -> np.ndarray:
    """A double-layer plate built from a single-layer crop: province + letter on top."""
    h, w = crop.shape[:2]
    top = cv2.resize(crop[:, : int(w * 0.29)], (int(w * 0.45), int(h * 0.8)))
    bottom = cv2.resize(crop[:, int(w * 0.31) :], (w, int(h * 1.3)))
    canvas = np.full((top.shape[0] + bottom.shape[0], w, 3), int(crop.mean()), np.uint8)
    x = (w - top.shape[1]) // 2
    canvas[: top.shape[0], x : x + top.shape[1]] = top
    canvas[top.shape[0] :] = bottom
    return canvas


def test_double_layer_plates_are_split_before_reading(data_dir: Path) -> None:
    d = data_dir / "eval" / "plate_text"
    labels = json.loads((d / "labels.json").read_text())["images"]
    rec = TextRecognizer()
    picks = [labels[i] for i in (0, 4, 8, 16)]
    split = whole = 0
    for im in picks:
        dbl = _as_double_layer(cv2.imread(str(d / im["file"])))
        gt = im["objects"][0]["text"]
        split += read_plate(rec, dbl)[0] == gt  # aspect < 2.5: read as double layer
        whole += read_plate(rec, dbl, double=False)[0] == gt
    assert split >= 3
    assert whole == 0  # read as one line, the top row is lost
