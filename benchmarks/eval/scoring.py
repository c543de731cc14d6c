"""Scoring exactly as ../shared/data/README.md defines it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.detectors.common import box_iou


@dataclass
class Counts:
    """Running counts of one task."""

    matched: int = 0
    detections: int = 0
    labelled: int = 0
    text_ok: int = 0
    text_total: int = 0

    def add(self, other: Counts) -> None:
        """Accumulate ``other``."""
        self.matched += other.matched
        self.detections += other.detections
        self.labelled += other.labelled
        self.text_ok += other.text_ok
        self.text_total += other.text_total

    def metrics(self) -> dict[str, float | int]:
        """precision, recall, f1 (and the counts behind them)."""
        p = self.matched / self.detections if self.detections else 0.0
        r = self.matched / self.labelled if self.labelled else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return {
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(f, 4),
            "matched": self.matched,
            "detections": self.detections,
            "labelled": self.labelled,
        }


def match_boxes(
    det_boxes: npt.NDArray[np.float32],
    det_scores: npt.NDArray[np.float32],
    gt_boxes: Sequence[Sequence[float]],
    gt_difficult: Sequence[bool],
    iou_threshold: float,
) -> tuple[Counts, list[int]]:
    """Greedy matching by descending detection score to unmatched labelled boxes.

    Each detection takes the unmatched labelled box it overlaps most (IoU ≥ threshold).
    A detection matched to a ``difficult`` box counts neither as a detection nor as a
    match; an unmatched difficult box is not a miss.

    Returns:
        The counts, and for every labelled box the index of its detection or ``-1``.
    """
    n_gt = len(gt_boxes)
    assignment = [-1] * n_gt
    counts = Counts(labelled=sum(1 for d in gt_difficult if not d))
    det_boxes = np.asarray(det_boxes, np.float32).reshape(-1, 4)
    if len(det_boxes) == 0:
        return counts, assignment
    iou = box_iou(det_boxes, np.asarray(gt_boxes, np.float32).reshape(-1, 4)) if n_gt else None
    for d in np.argsort(-np.asarray(det_scores), kind="stable"):
        g = -1
        if iou is not None:
            row = iou[d].copy()
            row[[i for i in range(n_gt) if assignment[i] >= 0]] = -1
            if row.max() >= iou_threshold:
                g = int(row.argmax())
        if g >= 0:
            assignment[g] = int(d)
            if gt_difficult[g]:
                continue
            counts.matched += 1
        counts.detections += 1
    return counts, assignment


def image_level(pred: Sequence[bool], truth: Sequence[bool]) -> dict[str, float | int]:
    """Image-level precision/recall/F1 (fire, smoke)."""
    tp = sum(p and t for p, t in zip(pred, truth, strict=True))
    c = Counts(matched=tp, detections=sum(pred), labelled=sum(truth))
    out = c.metrics()
    out["images"] = len(truth)
    return out


def poisson_upper95(k: int) -> float:
    """Exact one-sided 95 % upper bound of a Poisson mean after ``k`` events (Garwood; 2.996
    for none, the "rule of three"), by bisection on the Poisson CDF (no scipy needed)."""
    if k < 0:
        raise ValueError(f"event count {k} is negative")
    lo, hi = 0.0, 10.0 + 10.0 * k
    for _ in range(100):
        mid = (lo + hi) / 2
        cdf = sum(math.exp(-mid) * mid**i / math.factorial(i) for i in range(k + 1))
        lo, hi = (mid, hi) if cdf > 0.05 else (lo, mid)
    return hi
