"""Generic decoder for YOLO-format ONNX detectors (YOLOv5, YOLOv8, YOLOX layouts).

Lets operators drop in trained weights (fire/smoke, COCO...) without new code: the
layout, input size and class names are parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.detectors.batching import BatchedModel
from inference.detectors.common import clip_boxes, letterbox, nms

F32 = npt.NDArray[np.float32]
# boxes (N, 4), scores (N,), class indices (N,)
Detections = tuple[F32, F32, npt.NDArray[np.intp]]


class YoloLayout(StrEnum):
    """Output layouts.

    * ``yolov5``: ``[N, 5 + C]`` rows of cx, cy, w, h, objectness, class scores.
    * ``yolov8``: ``[4 + C, N]`` columns of cx, cy, w, h, class scores (no objectness).
    * ``yolox``: ``[N, 5 + C]`` grid-relative (decode with strides 8/16/32).
    """

    YOLOV5 = "yolov5"
    YOLOV8 = "yolov8"
    YOLOX = "yolox"


def yolox_grid(size: int, strides: tuple[int, ...] = (8, 16, 32)) -> tuple[F32, F32]:
    """Grid cell offsets ``(N, 2)`` and strides ``(N, 1)`` of a square YOLOX input."""
    grids, expanded = [], []
    for s in strides:
        n = size // s
        xv, yv = np.meshgrid(np.arange(n), np.arange(n))
        grids.append(np.stack([xv, yv], axis=2).reshape(-1, 2))
        expanded.append(np.full((n * n, 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(expanded).astype(np.float32)


def decode(
    pred: npt.NDArray[Any],
    layout: YoloLayout,
    size: int,
    conf: float,
    iou: float,
    strides: tuple[int, ...] = (8, 16, 32),
) -> Detections:
    """Decode one image's raw output into boxes (input pixels), scores and class indices.

    Args:
        pred: The output tensor without the batch axis.
        layout: Output layout.
        size: Square input size in pixels.
        conf: Minimum score (objectness × class score where there is objectness).
        iou: Per-class NMS IoU threshold.
        strides: YOLOX strides.

    Raises:
        ValueError: the tensor does not match the layout.
    """
    pred = np.asarray(pred, np.float32)
    if pred.ndim != 2:
        raise ValueError(f"expected a 2-D output per image, got shape {pred.shape}")
    if layout is YoloLayout.YOLOV8:
        rows = pred.T
        xywh, cls_scores = rows[:, :4], rows[:, 4:]
    else:
        rows = pred
        if layout is YoloLayout.YOLOX:
            grid, stride = yolox_grid(size, strides)
            if len(grid) != len(rows):
                raise ValueError(f"YOLOX output has {len(rows)} rows, grid {len(grid)}")
            rows = rows.copy()
            rows[:, :2] = (rows[:, :2] + grid) * stride
            rows[:, 2:4] = np.exp(rows[:, 2:4]) * stride
        xywh, cls_scores = rows[:, :4], rows[:, 5:] * rows[:, 4:5]
    if cls_scores.shape[1] == 0:
        raise ValueError("output carries no class scores")
    cls = cls_scores.argmax(axis=1)
    score = cls_scores[np.arange(len(cls)), cls]
    m = score > conf
    xywh, cls, score = xywh[m], cls[m], score[m]
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    # Per-class NMS by offsetting boxes of different classes apart.
    keep = nms(boxes + cls[:, None] * 4096.0, score, iou)
    return boxes[keep], score[keep], cls[keep]


@dataclass(slots=True)
class YoloSpec:
    """How to run a YOLO-format ONNX model.

    Attributes:
        layout: Output layout.
        size: Square input size.
        bgr: Feed BGR (YOLOX) instead of RGB (YOLOv5/v8).
        normalize: Divide pixels by 255 (YOLOv5/v8) or feed raw 0..255 (YOLOX).
        pad_value: Letterbox padding value.
    """

    layout: YoloLayout
    size: int
    bgr: bool
    normalize: bool
    pad_value: int = 114

    @classmethod
    def for_layout(cls, layout: YoloLayout | str, size: int) -> YoloSpec:
        """The usual preprocessing of each layout's reference export."""
        layout = YoloLayout(layout)
        if layout is YoloLayout.YOLOX:
            return cls(layout, size, bgr=True, normalize=False)
        return cls(layout, size, bgr=False, normalize=True)


class YoloModel:
    """A YOLO-format ONNX model: BGR frames → boxes (frame pixels), scores, class indices.

    All frames of one call are letterboxed to the model's input size and run as one batch
    (see :class:`inference.detectors.batching.BatchedModel`).
    """

    def __init__(
        self, path: Path, spec: YoloSpec | None = None, conf: float = 0.3, iou: float = 0.45
    ) -> None:
        self.model_file = str(path)
        self.net = BatchedModel(path, check_scale=255.0 if spec and not spec.normalize else 1.0)
        shape = self.net.input_shape
        size = shape[-1] if isinstance(shape[-1], int) else 640
        self.spec = spec or YoloSpec.for_layout(_guess_layout(self.net.output_shapes[0]), size)
        self.conf = conf
        self.iou = iou

    def preprocess(self, frames: list[npt.NDArray[np.uint8]]) -> tuple[F32, list[float]]:
        """Letterboxed ``[N, 3, S, S]`` float input and each frame's scale."""
        sp = self.spec
        x = np.empty((len(frames), 3, sp.size, sp.size), np.float32)
        scales = []
        for i, frame in enumerate(frames):
            canvas, scale = letterbox(frame if sp.bgr else frame[:, :, ::-1], sp.size, sp.pad_value)
            x[i] = canvas.transpose(2, 0, 1)
            scales.append(scale)
        if sp.normalize:
            x /= 255.0
        return x, scales

    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        """Detect on BGR frames (any sizes), one batched run; one result per frame."""
        if not frames:
            return []
        sp = self.spec
        x, scales = self.preprocess(frames)
        preds = self.net.run(x)[0]
        out = []
        for frame, pred, scale in zip(frames, preds, scales, strict=True):
            boxes, scores, cls = decode(pred, sp.layout, sp.size, self.conf, self.iou)
            h, w = frame.shape[:2]
            out.append((clip_boxes(boxes / scale, w, h), scores, cls))
        return out

    def __call__(self, frame: npt.NDArray[np.uint8]) -> Detections:
        """Detect on one BGR frame."""
        return self.detect([frame])[0]


def _guess_layout(shape: list[int | str | None]) -> YoloLayout:
    """YOLOv8 puts the few channel rows first; v5/X put the many anchors first."""
    dims = [d for d in shape[-2:] if isinstance(d, int)]
    if len(dims) == 2 and dims[0] < dims[1]:
        return YoloLayout.YOLOV8
    return YoloLayout.YOLOV5
