"""Held-out scoring of the detector: image-level P/R/F1 and box F1 per class, thresholds.

Scores follow ``../shared/data/README.md`` (an image is predicted positive when any box of the
class is reported; box F1 matches greedily by descending score at IoU ≥ 0.3), using the same
rule as ``citysight eval`` (:func:`inference.training.metrics.box_matches`, checked against
``benchmarks.eval.scoring.match_boxes`` in the tests). Detections are
kept down to :data:`FLOOR` once, so every threshold of a sweep is scored from one pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.detectors.common import clip_boxes, read_image
from inference.detectors.fire_smoke_net import decode
from inference.training.fire_det.data import Item
from inference.training.metrics import box_matches, prf

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
#: Raw network outputs of a list of frames: per frame scores, ltrb, input (h, w), scale.
RawFn = Callable[[list[U8]], list[tuple[F32, F32, tuple[int, int], float]]]

CLASSES = ("fire", "smoke")
FLOOR = 0.05
BOX_IOU = 0.3
#: Most no-fire validation video frames a chosen threshold may flag (per class).
MAX_NEGATIVE_FRAME_RATE = 0.05
#: Thresholds tried when choosing one per class on held-out data.
GRID = tuple(round(t, 3) for t in np.arange(0.15, 0.851, 0.025))


@dataclass
class Scored:
    """Detections (down to :data:`FLOOR`) and labels of one image.

    Attributes:
        name: Image file or frame name.
        gt: Per class ``[K, 4]`` labelled boxes (frame pixels); ``None`` where the class is
            unknown for this image.
        det: Per class ``(boxes [M, 4], scores [M])``.
    """

    name: str
    gt: list[F32 | None]
    det: list[tuple[F32, F32]]
    video_negative: bool = False


def detect_all(raw: RawFn, frames: list[U8], floor: float = FLOOR) -> list[list[tuple[F32, F32]]]:
    """Per frame, per class ``(boxes, scores)`` above ``floor`` (frame pixels)."""
    out = []
    for frame, (s, d, hw, scale) in zip(frames, raw(frames), strict=True):
        boxes, conf, cls = decode(s, d, hw, (floor,) * s.shape[1])
        h, w = frame.shape[:2]
        boxes = clip_boxes(boxes / scale, w, h)
        out.append([(boxes[cls == c], conf[cls == c]) for c in range(s.shape[1])])
    return out


def score_items(raw: RawFn, items: list[Item], batch: int = 8) -> list[Scored]:
    """Run ``raw`` over labelled items (boxes normalised in the item)."""
    scored: list[Scored] = []
    for i in range(0, len(items), batch):
        part = items[i : i + batch]
        frames = [read_image(it.path) for it in part]
        for it, frame, det in zip(part, frames, detect_all(raw, frames), strict=True):
            h, w = frame.shape[:2]
            gt: list[F32 | None] = []
            for c in range(len(CLASSES)):
                if not it.known[c]:
                    gt.append(None)
                    continue
                b = it.boxes[it.boxes[:, 4] == c, :4] * np.asarray([w, h, w, h], np.float32)
                gt.append(b.astype(np.float32))
            scored.append(Scored(str(it.path), gt, det))
    return scored


def score_negative_frames(raw: RawFn, frames: list[U8], names: list[str]) -> list[Scored]:
    """Run ``raw`` over frames known to hold neither class."""
    out = []
    for i in range(0, len(frames), 8):
        dets = detect_all(raw, frames[i : i + 8])
        for k, det in enumerate(dets):
            empty = np.zeros((0, 4), np.float32)
            out.append(Scored(names[i + k], [empty, empty], det, video_negative=True))
    return out


def metrics(scored: list[Scored], cls: int, threshold: float) -> dict[str, Any]:
    """Image-level P/R/F1 and ``box_f1`` of class ``cls`` at ``threshold``."""
    pred, truth = [], []
    matched = detections = labelled = 0
    for s in scored:
        gt = s.gt[cls]
        if gt is None:
            continue
        b, sc = s.det[cls]
        keep = sc >= threshold
        pred.append(bool(keep.any()))
        truth.append(len(gt) > 0)
        matched += box_matches(b[keep], sc[keep], gt, BOX_IOU)
        detections += int(keep.sum())
        labelled += len(gt)
    res: dict[str, Any] = prf(pred, truth)
    res["images"] = len(truth)
    bp = matched / detections if detections else 0.0
    br = matched / labelled if labelled else 0.0
    res["box_f1"] = round(2 * bp * br / (bp + br), 4) if bp + br else 0.0
    res["threshold"] = threshold
    return res


def negative_frame_rate(scored: list[Scored], cls: int, threshold: float) -> float:
    """Share of the no-fire video frames (``video_negative``) with a box of ``cls``."""
    neg = [s for s in scored if s.video_negative]
    if not neg:
        return 0.0
    return sum(bool((s.det[cls][1] >= threshold).any()) for s in neg) / len(neg)


def choose_thresholds(
    scored: list[Scored], max_negative_rate: float = MAX_NEGATIVE_FRAME_RATE
) -> tuple[tuple[float, ...], list[dict[str, Any]]]:
    """Per class, the :data:`GRID` threshold with the best image-level F1 on ``scored``
    among those that flag at most ``max_negative_rate`` of the no-fire video frames (a
    camera sees those all day: per-frame false alarms there are what the alert logic must
    absorb); ties go to the higher threshold. With the metrics there."""
    chosen, at = [], []
    for c in range(len(CLASSES)):
        best: dict[str, Any] | None = None
        allowed = [t for t in GRID if negative_frame_rate(scored, c, t) <= max_negative_rate]
        for t in allowed or [GRID[-1]]:
            m = metrics(scored, c, t)
            m["video_negative_frame_rate"] = round(negative_frame_rate(scored, c, t), 4)
            if best is None or m["f1"] >= best["f1"]:
                best = m
        assert best is not None
        chosen.append(float(best["threshold"]))
        at.append(best)
    return tuple(chosen), at


def summary(scored: list[Scored], thresholds: tuple[float, ...]) -> dict[str, Any]:
    """Per class metrics at ``thresholds`` and a few fixed thresholds (for the curve)."""
    out: dict[str, Any] = {}
    for c, name in enumerate(CLASSES):
        out[name] = {
            "at_threshold": metrics(scored, c, thresholds[c]),
            "curve": [metrics(scored, c, t) for t in (0.3, 0.4, 0.5, 0.6, 0.7)],
        }
    return out


def video_negative_frames(
    videos_dir: Path, names: tuple[str, ...], per_clip: int
) -> tuple[list[U8], list[str]]:
    """Frames spread over no-fire clips (the held-out negatives of threshold choice)."""
    from inference.training.fire_det.synth import video_frames

    frames: list[U8] = []
    labels: list[str] = []
    for n in names:
        path = videos_dir / n
        if not path.is_file():
            logger.warning("validation clip missing: %s", path)
            continue
        got = video_frames(path, per_clip, long_side=None)
        frames += got
        labels += [f"{n}#{i}" for i in range(len(got))]
    return frames, labels
