"""Image-level and box metrics shared by the training scripts (no torch needed)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from inference.detectors.common import box_iou


def prf(pred: list[bool], truth: list[bool]) -> dict[str, float | int]:
    """Image-level precision/recall/F1 as ``../shared/data/README.md`` defines them."""
    tp = sum(p and t for p, t in zip(pred, truth, strict=True))
    npred, npos = sum(pred), sum(truth)
    p = tp / npred if npred else 0.0
    r = tp / npos if npos else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(f, 4),
        "matched": tp,
        "detections": npred,
        "labelled": npos,
    }


def box_matches(
    det_boxes: npt.NDArray[np.float32],
    det_scores: npt.NDArray[np.float32],
    gt_boxes: npt.NDArray[np.float32],
    iou_threshold: float,
) -> int:
    """Detections matched to labelled boxes, greedily by descending score: each detection
    takes the unmatched labelled box it overlaps most at IoU ≥ ``iou_threshold``.

    The same rule as ``citysight eval``'s matcher without "difficult" boxes (the training
    sets have none); ``tests/inference/training`` checks the two agree.
    """
    det_boxes = np.asarray(det_boxes, np.float32).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    if not len(det_boxes) or not len(gt_boxes):
        return 0
    iou = box_iou(det_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), bool)
    matched = 0
    for d in np.argsort(-np.asarray(det_scores), kind="stable"):
        row = np.where(taken, -1.0, iou[d])
        if row.max() >= iou_threshold:
            taken[int(row.argmax())] = True
            matched += 1
    return matched
