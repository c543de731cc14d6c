"""Shared helpers: ONNX Runtime sessions, letterboxing, NMS, model file checks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inference.detectors.base import DetectorLoadError

logger = logging.getLogger(__name__)

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


#: Decode to 8-bit BGR and keep the pixels as stored: labelled boxes are in stored pixel
#: coordinates, and OpenCV otherwise applies a JPEG's EXIF orientation by default.
IMREAD_AS_STORED = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """Read an image file as 8-bit BGR, as stored (no EXIF rotation).

    Raises:
        ValueError: the file is missing or not a decodable image (the message names it).
    """
    img = cv2.imread(str(path), IMREAD_AS_STORED)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    # IMREAD_COLOR always decodes to uint8 BGR (the stubs say MatLike).
    return np.asarray(img, dtype=np.uint8)


def require_file(path: Path) -> Path:
    """Return ``path`` if it is a non-empty file, else raise :class:`DetectorLoadError`."""
    if not path.is_file():
        raise DetectorLoadError(f"model file missing: {path}")
    if path.stat().st_size == 0:
        raise DetectorLoadError(f"model file empty: {path}")
    return path


def ort_session(path: Path, threads: int = 1) -> object:
    """An ONNX Runtime CPU session with few threads (the host is shared).

    Raises:
        DetectorLoadError: the file is missing or not a loadable ONNX model.
    """
    import onnxruntime as ort

    require_file(path)
    opts = ort.SessionOptions()
    # Few threads per session: many sessions share 2 cores; more threads only contend.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        raise DetectorLoadError(f"cannot load ONNX model {path}: {exc}") from exc


def letterbox(
    img: npt.NDArray[np.uint8], size: int, pad_value: int = 114
) -> tuple[npt.NDArray[np.uint8], float]:
    """Resize keeping aspect ratio into a ``size``×``size`` canvas, padded bottom/right.

    Returns:
        The canvas and the scale applied (frame pixels = canvas pixels / scale).
    """
    h, w = img.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    canvas = np.full((size, size, 3), pad_value, np.uint8)
    canvas[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, scale


def nms(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float
) -> npt.NDArray[np.int64]:
    """Indices kept by greedy non-maximum suppression, by descending score."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while len(order):
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(x1[i], x1[rest])
        yy1 = np.maximum(y1[i], y1[rest])
        xx2 = np.minimum(x2[i], x2[rest])
        yy2 = np.minimum(y2[i], y2[rest])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        ovr = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[ovr < iou]
    return np.asarray(keep, np.int64)


def box_iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes → ``(N, M)``."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou: npt.NDArray[np.float32] = (
        inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
    ).astype(np.float32)
    return iou


def clip_boxes(boxes: npt.NDArray[np.float32], w: int, h: int) -> npt.NDArray[np.float32]:
    """Clip xyxy boxes to the frame."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out
