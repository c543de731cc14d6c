"""PP-PicoDet ONNX detector (PaddleDetection's GFL head): preprocessing and decoding in numpy.

The exported PicoDet graph stops before its post-processing: per feature level (strides
8, 16, 32, 64) it gives ``[1, n, C]`` class scores, already through a sigmoid, and
``[1, n, 4 * (reg_max + 1)]`` box distributions (logits). Decoding follows the published
PicoDet / GFL post-processing:

* anchor points at the centres of the level's cells, ``((col + 0.5) * stride,
  (row + 0.5) * stride)``, on a ``ceil(size / stride)`` grid;
* per side (left, top, right, bottom) a softmax over the ``reg_max + 1`` bins; the expected
  bin index times the stride is the distance from the anchor point to that side
  (distribution focal loss, "DFL");
* every class whose score passes the threshold is a candidate (multi-label), then class-wise
  NMS, at most :data:`KEEP_TOP_K` boxes per image.

Input: the frame resized (no letterbox) to the square input, BGR → RGB, normalised with the
ImageNet mean and standard deviation (PaddleDetection's ``NormalizeImage`` with
``is_scale``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from inference.detectors.base import DetectorLoadError
from inference.detectors.batching import BatchedModel
from inference.detectors.common import clip_boxes, nms

F32 = npt.NDArray[np.float32]
# boxes (N, 4), scores (N,), class indices (N,)
Detections = tuple[F32, F32, npt.NDArray[np.intp]]

STRIDES: tuple[int, ...] = (8, 16, 32, 64)
MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
STD_RGB = np.array([0.229, 0.224, 0.225], np.float32) * 255.0
#: PaddleDetection's PicoDet export settings (``MultiClassNMS``): candidates before NMS,
#: boxes kept after it, and the NMS IoU.
NMS_TOP_K = 1000
KEEP_TOP_K = 100
NMS_IOU = 0.6
COCO_CLASSES = 80


def anchor_points(size: int, strides: tuple[int, ...] = STRIDES) -> list[F32]:
    """Anchor-point centres ``(n, 2)`` (x, y in input pixels) of each level, row-major."""
    out = []
    for s in strides:
        n = -(-size // s)  # ceil: PicoDet pads the last cell (416 / 64 -> 7)
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        out.append(((np.stack([xs, ys], -1).reshape(-1, 2) + 0.5) * s).astype(np.float32))
    return out


def dfl_distances(logits: npt.NDArray[Any]) -> F32:
    """Expected bin of each side: ``(n, 4 * (R + 1))`` logits → ``(n, 4)`` bin units.

    Raises:
        ValueError: the width is not four sides of at least two bins.
    """
    logits = np.asarray(logits, np.float32)
    if logits.ndim != 2 or logits.shape[1] % 4 or logits.shape[1] < 8:
        raise ValueError(f"expected (n, 4 * (reg_max + 1)) distributions, got {logits.shape}")
    bins = logits.shape[1] // 4
    d = logits.reshape(-1, 4, bins)
    e = np.exp(d - d.max(axis=2, keepdims=True))
    p = e / e.sum(axis=2, keepdims=True)
    dist: F32 = (p @ np.arange(bins, dtype=np.float32)).astype(np.float32)
    return dist


def decode(
    scores: list[npt.NDArray[Any]],
    dists: list[npt.NDArray[Any]],
    size: int,
    conf: float,
    iou: float = NMS_IOU,
    strides: tuple[int, ...] = STRIDES,
) -> Detections:
    """Decode one image's per-level outputs into boxes (input pixels), scores and classes.

    Args:
        scores: Per level ``(n, C)`` class probabilities.
        dists: Per level ``(n, 4 * (reg_max + 1))`` distribution logits.
        size: Square input size in pixels.
        conf: Minimum class score.
        iou: Class-wise NMS IoU threshold.
        strides: Stride of each level.

    Raises:
        ValueError: the tensors do not match the levels' anchor grids.
    """
    if not len(scores) == len(dists) == len(strides):
        raise ValueError(f"{len(scores)} score and {len(dists)} box levels, {len(strides)} strides")
    all_boxes, all_scores, all_cls = [], [], []
    for sc, dl, centres, s in zip(
        scores, dists, anchor_points(size, strides), strides, strict=True
    ):
        sc = np.asarray(sc, np.float32)
        if sc.shape[0] != len(centres) or np.asarray(dl).shape[0] != len(centres):
            raise ValueError(
                f"stride {s}: {sc.shape[0]} score rows, {np.asarray(dl).shape[0]} box rows, "
                f"grid {len(centres)}"
            )
        rows, cls = np.nonzero(sc > conf)
        if not len(rows):
            continue
        uniq, inv = np.unique(rows, return_inverse=True)
        d = dfl_distances(np.asarray(dl)[uniq]) * s
        c = centres[uniq]
        boxes = np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1)
        all_boxes.append(boxes[inv])
        all_scores.append(sc[rows, cls])
        all_cls.append(cls)
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.intp)
    boxes = np.concatenate(all_boxes).astype(np.float32)
    score = np.concatenate(all_scores).astype(np.float32)
    cls = np.concatenate(all_cls).astype(np.intp)
    if len(score) > NMS_TOP_K:
        top = np.argsort(-score, kind="stable")[:NMS_TOP_K]
        boxes, score, cls = boxes[top], score[top], cls[top]
    # Class-wise NMS by offsetting boxes of different classes apart.
    keep = nms(boxes + cls[:, None].astype(np.float32) * 4096.0, score, iou)[:KEEP_TOP_K]
    return boxes[keep], score[keep], cls[keep]


class PicoDetModel:
    """A PicoDet ONNX model: BGR frames → boxes (frame pixels), scores, COCO class indices.

    Args:
        path: The ONNX file (``picodet_s_416_coco.onnx``).
        conf: Minimum class score.
        iou: Class-wise NMS IoU.

    Raises:
        DetectorLoadError: the file is missing, not loadable, or its outputs are not the
            PicoDet head's (four score levels, then four distribution levels).
    """

    def __init__(self, path: Path, conf: float = 0.3, iou: float = NMS_IOU) -> None:
        self.model_file = str(path)
        self.net = BatchedModel(path)
        shape = self.net.input_shape
        if len(shape) != 4 or not isinstance(shape[-1], int) or shape[-1] != shape[-2]:
            raise DetectorLoadError(
                f"{path.name}: expected a square [N, 3, S, S] input, got {shape}"
            )
        self.size = int(shape[-1])
        self.conf = conf
        self.iou = iou
        self._check_outputs(path)

    def _check_outputs(self, path: Path) -> None:
        shapes = self.net.output_shapes
        levels = len(STRIDES)
        grids = [len(a) for a in anchor_points(self.size)]
        if len(shapes) != 2 * levels:
            raise DetectorLoadError(
                f"{path.name}: not a PicoDet head export: {len(shapes)} outputs, expected "
                f"{2 * levels} (class scores and box distributions per stride {STRIDES})"
            )
        for lvl, n in enumerate(grids):
            sc, dl = shapes[lvl], shapes[lvl + levels]
            ok = (
                len(sc) == 3
                and len(dl) == 3
                and sc[1] == n
                and dl[1] == n
                and sc[2] == COCO_CLASSES
                and isinstance(dl[2], int)
                and dl[2] % 4 == 0
                and dl[2] >= 8
            )
            if not ok:
                raise DetectorLoadError(
                    f"{path.name}: output shapes {sc} / {dl} do not match stride {STRIDES[lvl]} "
                    f"({n} anchor points, {COCO_CLASSES} classes, 4 * (reg_max + 1) bins)"
                )
        bins = shapes[levels][2]
        self.reg_max = bins // 4 - 1 if isinstance(bins, int) else 0

    def preprocess(self, frames: list[npt.NDArray[np.uint8]]) -> F32:
        """Resized, RGB, normalised ``[N, 3, S, S]`` float input."""
        s = self.size
        x = np.empty((len(frames), 3, s, s), np.float32)
        for i, frame in enumerate(frames):
            # PaddleDetection's PicoDet reader: plain resize with cubic interpolation.
            rgb = cv2.resize(frame, (s, s), interpolation=cv2.INTER_CUBIC)[:, :, ::-1]
            x[i] = ((rgb.astype(np.float32) - MEAN_RGB) / STD_RGB).transpose(2, 0, 1)
        return x

    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        """Detect on BGR frames (any sizes), one batched run; one result per frame."""
        if not frames:
            return []
        outs = self.net.run(self.preprocess(frames))
        levels = len(STRIDES)
        res = []
        for i, frame in enumerate(frames):
            boxes, scores, cls = decode(
                [o[i] for o in outs[:levels]],
                [o[i] for o in outs[levels:]],
                self.size,
                self.conf,
                self.iou,
            )
            h, w = frame.shape[:2]
            scale = np.array([w / self.size, h / self.size] * 2, np.float32)
            res.append((clip_boxes(boxes * scale, w, h), scores, cls))
        return res

    def __call__(self, frame: npt.NDArray[np.uint8]) -> Detections:
        """Detect on one BGR frame."""
        return self.detect([frame])[0]
