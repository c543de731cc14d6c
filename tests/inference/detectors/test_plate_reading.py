"""The plate reader on synthetic crops: NEV and double-layer kinds, the unreadable state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from benchmarks.eval.synthetic_plates import KINDS, crops, run
from citysight.plates import UNREADABLE
from inference.detectors.base import load_detector
from inference.detectors.ocr import TextRecognizer
from inference.detectors.plate import read_plate, read_plate_full
from streams.synthetic.plates import plate_image_kind

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"


def _bgr(text: str, kind: str, width: int = 160) -> npt.NDArray[np.uint8]:
    return np.asarray(
        cv2.cvtColor(plate_image_kind(text, kind, width), cv2.COLOR_RGB2BGR), np.uint8
    )


@pytest.fixture(scope="module")
def rec() -> TextRecognizer:
    return TextRecognizer()


@pytest.mark.parametrize(
    ("kind", "text"),
    [("blue", "琼A12345"), ("green_nev", "琼AD12345"), ("yellow_double", "琼B6789D")],
)
def test_clean_crops_of_every_kind_read_exactly(rec: TextRecognizer, kind: str, text: str) -> None:
    crop = _bgr(text, kind)
    r = read_plate_full(rec, crop)
    assert (r.text, r.status) == (text, "ok")
    assert r.double is (kind == "yellow_double")


def test_double_layer_read_as_one_line_loses_the_top_row(rec: TextRecognizer) -> None:
    crop = _bgr("琼B6789D", "yellow_double")
    assert read_plate(rec, crop, double=False)[0] != "琼B6789D"


def test_small_seeded_synthetic_set(rec: TextRecognizer) -> None:
    """8 degraded crops per kind (seeded): most read exactly, none read wrong."""
    for kind in KINDS:
        got = [(t, read_plate(rec, img)[0]) for t, img in crops(kind, 8)]
        wrong = [(t, r) for t, r in got if r and r != t]
        assert not wrong, kind
        assert sum(t == r for t, r in got) >= 6, (kind, got)


def test_unreadable_is_a_distinct_state(rec: TextRecognizer) -> None:
    crop = _bgr("琼A12345", "blue")
    strict = read_plate_full(rec, crop, min_conf=1.01)  # no reading is that sure
    assert (strict.text, strict.status, strict.plate_type) == (UNREADABLE, "low_confidence", None)
    assert strict.unreadable and strict.score == 0.0 and strict.min_conf > 0.5
    noise = np.random.default_rng(0).integers(0, 255, (48, 160, 3), dtype=np.uint8)
    r = read_plate_full(rec, noise)
    assert (r.text, r.status) == (UNREADABLE, "no_plate")


def test_detector_reports_an_unreadable_plate_as_a_box_without_text(models_dir: Path) -> None:
    """End to end: y5fu finds the plate; below the threshold its text is "" and score 0."""
    frame = np.full((480, 640, 3), 90, np.uint8)
    plate = _bgr("琼A12345", "blue", 200)
    frame[300 : 300 + plate.shape[0], 220 : 220 + plate.shape[1]] = plate
    det = load_detector("plate", models_dir, ["y5fu"])
    out = det.detect([frame], ["cam"])[0]
    assert len(out) >= 1 and "琼A12345" in out.extra["plate_text"]
    det.min_char_conf = 1.01  # type: ignore[attr-defined]
    out = det.detect([frame], ["cam"])[0]
    assert len(out) >= 1
    assert out.extra["plate_text"] == [UNREADABLE] * len(out)
    assert out.extra["plate_score"] == [0.0] * len(out)


@pytest.mark.slow
def test_synthetic_sets_200_per_kind() -> None:
    """The benchmark's full seeded set holds the committed rates (docs/detectors.md)."""
    committed = json.loads((RESULTS / "plates_synthetic.json").read_text(encoding="utf-8"))
    res = run(200)
    assert res["chosen_threshold"] == committed["chosen_threshold"]
    for kind, r in res["kinds"].items():
        want = committed["kinds"][kind]
        assert r["crops"] == 200
        assert r["exact"] >= want["exact"] - 0.02, (kind, r)
        assert r["wrong"] <= want["wrong"] + 0.01, (kind, r)


def test_choose_threshold_weighs_wrong_reads() -> None:
    from benchmarks.eval.synthetic_plates import SWEEP, choose_threshold

    def kind(wrong_until: float) -> dict[str, Any]:
        # exact falls by 0.01 per step; wrong reads vanish from ``wrong_until`` on
        return {
            "sweep": {
                str(t): {"exact": 0.99 - 0.01 * i, "wrong": 0.0 if t >= wrong_until else 0.02}
                for i, t in enumerate(SWEEP)
            }
        }

    assert choose_threshold({"a": kind(0.3)}) == 0.3
    assert choose_threshold({"a": kind(0.0)}) == 0.0
    assert choose_threshold({"a": kind(0.3)}, wrong_cost=0.1) == 0.0


def test_shipped_threshold_is_the_synthetic_choice() -> None:
    """MIN_CHAR_CONF is what the committed synthetic sweep chose (never tuned on eval)."""
    from inference.detectors.plate import MIN_CHAR_CONF

    res = json.loads((RESULTS / "plates_synthetic.json").read_text(encoding="utf-8"))
    assert res["synthetic"] is True and set(res["kinds"]) == set(KINDS)
    assert res["chosen_threshold"] == MIN_CHAR_CONF == res["min_char_conf"]
