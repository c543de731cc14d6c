"""Scoring rules of ../shared/data/README.md (table-driven) and the baseline check."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.eval.baseline import check, make_baseline
from benchmarks.eval.scoring import image_level, match_boxes

G1, G2 = [0, 0, 10, 10], [20, 20, 30, 30]


@pytest.mark.parametrize(
    ("dets", "scores", "gts", "difficult", "expect"),
    [
        ([G1, G2], [0.9, 0.8], [G1, G2], [False, False], (2, 2, 2)),
        ([G1], [0.9], [G1, G2], [False, False], (1, 1, 2)),  # one miss
        ([G1, [100, 100, 110, 110]], [0.9, 0.8], [G1], [False], (1, 2, 1)),  # one FP
        # two detections on one box: the higher score matches, the other is an FP
        ([[0, 0, 10, 11], G1], [0.5, 0.9], [G1], [False], (1, 2, 1)),
        ([[0, 0, 10, 30]], [0.9], [G1], [False], (0, 1, 1)),  # IoU 1/3 < 0.5
        # a detection on a difficult box counts neither way; an unmatched one is no miss
        ([G2], [0.9], [G1, G2], [False, True], (0, 0, 1)),
        ([], [], [G2], [True], (0, 0, 0)),
        ([G1], [0.9], [], [], (0, 1, 0)),
    ],
)
def test_match_boxes(dets, scores, gts, difficult, expect) -> None:
    c, _ = match_boxes(np.array(dets, np.float32), np.array(scores), gts, difficult, 0.5)
    assert (c.matched, c.detections, c.labelled) == expect


def test_image_level() -> None:
    m = image_level([True, True, False, False], [True, False, True, False])
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)


def test_baseline_catches_regression_and_missing_tier() -> None:
    measured = {"faces": {"tier": "yunet", "precision": 0.95, "recall": 0.9, "f1": 0.92}}
    base = make_baseline(measured)
    assert base == {"faces/yunet": {"precision": 0.92, "recall": 0.87, "f1": 0.89}}
    assert check(measured, base) == []
    worse = {"faces": {"tier": "yunet", "precision": 0.95, "recall": 0.5, "f1": 0.65}}
    assert len(check(worse, base)) == 2
    assert check({"faces": {"tier": "haar", "precision": 1, "recall": 1, "f1": 1}}, base) == [
        "faces/yunet: not measured"
    ]


def test_baseline_caps_wrong_plate_reads() -> None:
    """``wrong_rate`` is a ceiling: more wrong plates fail the gate, fewer do not."""
    measured = {"plate_text": {"tier": "ppocrv4_rec", "text_exact": 0.99, "wrong_rate": 0.0}}
    base = make_baseline(measured)
    assert base == {"plate_text/ppocrv4_rec": {"text_exact": 0.96, "wrong_rate": 0.03}}
    assert check(measured, base) == []
    worse = {"plate_text": {"tier": "ppocrv4_rec", "text_exact": 0.99, "wrong_rate": 0.05}}
    assert check(worse, base) == ["plate_text/ppocrv4_rec: wrong_rate 0.05 > baseline ceiling 0.03"]
    unmeasured = {"plate_text": {"tier": "ppocrv4_rec", "text_exact": 0.99}}
    assert len(check(unmeasured, base)) == 1


@pytest.mark.parametrize(
    ("k", "upper"),
    # Garwood's exact one-sided 95 % bounds (chi-square tables: χ²(0.95, 2k + 2) / 2).
    [(0, 2.996), (1, 4.744), (2, 6.296), (5, 10.513), (10, 16.962)],
)
def test_poisson_upper95(k: int, upper: float) -> None:
    from benchmarks.eval.scoring import poisson_upper95

    assert poisson_upper95(k) == pytest.approx(upper, abs=2e-3)


def test_poisson_upper95_refuses_a_negative_count() -> None:
    from benchmarks.eval.scoring import poisson_upper95

    with pytest.raises(ValueError, match="negative"):
        poisson_upper95(-1)
