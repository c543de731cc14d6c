"""Image-level metrics shared by the training scripts (no torch needed)."""

from __future__ import annotations


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
