"""Face detection (detection only: no embeddings, no identification).

Tiers: ``yunet`` (YuNet small), ``yunet_n`` (YuNet nano), ``haar`` (OpenCV's cascade).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Literal, cast

import cv2
import numpy as np
import numpy.typing as npt

from citysight.config import Detector
from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorLoadError, DetectorOutput
from inference.detectors.batching import BatchedModel
from inference.detectors.common import require_file

logger = logging.getLogger(__name__)

SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
TOP_K = 5000

F32 = npt.NDArray[np.float32]


def _faces(boxes: npt.ArrayLike, scores: npt.ArrayLike) -> DetectorOutput:
    score_arr = np.asarray(scores, np.float32)
    return DetectorOutput(
        boxes=np.asarray(boxes, np.float32),
        scores=score_arr,
        class_ids=np.full(len(score_arr), int(ObjectClass.FACE), np.int32),
    )


def _pad32(n: int) -> int:
    return ((n - 1) // 32 + 1) * 32


def yunet_nms(faces: F32, score_threshold: float, nms_threshold: float, top_k: int) -> F32:
    """OpenCV's ``dnn::NMSBoxes`` as ``FaceDetectorYN`` calls it.

    Boxes are truncated to integer ``(x, y, w, h)`` rectangles; candidates scoring above the
    threshold are visited by descending score (stable), at most ``top_k``, and one is kept
    when its IoU with every kept box is at most ``nms_threshold``.
    """
    rects = np.trunc(faces[:, :4]).astype(np.int64)
    scores = faces[:, 14]
    cand = np.nonzero(scores > score_threshold)[0]
    order = cand[np.argsort(-scores[cand], kind="stable")][:top_k]
    x1, y1 = rects[:, 0], rects[:, 1]
    x2, y2 = x1 + rects[:, 2], y1 + rects[:, 3]
    areas = rects[:, 2] * rects[:, 3]
    keep: list[int] = []
    for i in order:
        if keep:
            k = np.asarray(keep)
            iw = np.minimum(x2[i], x2[k]) - np.maximum(x1[i], x1[k])
            ih = np.minimum(y2[i], y2[k]) - np.maximum(y1[i], y1[k])
            inter = np.where((iw > 0) & (ih > 0), iw * ih, 0)
            union = areas[i] + areas[k] - inter
            # OpenCV's jaccardDistance: two empty rectangles overlap fully.
            iou = np.where(areas[i] + areas[k] > 0, inter / np.maximum(union, 1), 1.0)
            if (iou > nms_threshold).any():
                continue
        keep.append(int(i))
    return faces[np.asarray(keep, np.int64)]


def decode_yunet(
    outputs: dict[str, npt.NDArray[np.float32]],
    pad_hw: tuple[int, int],
    score_threshold: float = SCORE_THRESHOLD,
    nms_threshold: float = NMS_THRESHOLD,
    top_k: int = TOP_K,
) -> F32:
    """One image's YuNet outputs → ``(M, 15)`` rows as ``FaceDetectorYN.detect`` returns them.

    Rows are ``x, y, w, h``, five landmarks ``(x, y)``, score, in input pixels. This follows
    OpenCV 4.x ``FaceDetectorYNImpl::postProcess`` step by step (score = sqrt(cls × obj),
    boxes from cell offsets and exp sizes, NMS only when more than one face is found), so
    both runtimes give the same faces.

    Args:
        outputs: Output name (``cls_8``... ``kps_32``) → that image's ``(cells, k)`` array.
        pad_hw: The padded input height and width (multiples of 32).
    """
    pw = pad_hw[1]
    parts = []
    for stride in (8, 16, 32):
        cols = pw // stride
        cls = np.clip(outputs[f"cls_{stride}"][:, 0], 0, 1)
        obj = np.clip(outputs[f"obj_{stride}"][:, 0], 0, 1)
        score = np.sqrt(cls * obj)
        idx = np.nonzero(score >= score_threshold)[0]
        if len(idx) == 0:
            continue
        c = (idx % cols).astype(np.float32)
        r = (idx // cols).astype(np.float32)
        bbox = outputs[f"bbox_{stride}"][idx]
        kps = outputs[f"kps_{stride}"][idx]
        w = np.exp(bbox[:, 2]) * stride
        h = np.exp(bbox[:, 3]) * stride
        rows = np.empty((len(idx), 15), np.float32)
        rows[:, 0] = (c + bbox[:, 0]) * stride - w / 2
        rows[:, 1] = (r + bbox[:, 1]) * stride - h / 2
        rows[:, 2] = w
        rows[:, 3] = h
        rows[:, 4:14:2] = (kps[:, 0::2] + c[:, None]) * stride
        rows[:, 5:14:2] = (kps[:, 1::2] + r[:, None]) * stride
        rows[:, 14] = score[idx]
        parts.append(rows)
    if not parts:
        return np.zeros((0, 15), np.float32)
    faces = np.concatenate(parts)
    if len(faces) > 1:
        faces = yunet_nms(faces, score_threshold, nms_threshold, top_k)
    return faces


def _from_rows(faces: F32) -> DetectorOutput:
    """``FaceDetectorYN`` rows → boxes, scores and the ``landmarks`` column."""
    if len(faces) == 0:
        return _faces(np.zeros((0, 4)), np.zeros(0))
    boxes = faces[:, :4].copy()
    boxes[:, 2:] += boxes[:, :2]
    res = _faces(boxes, faces[:, 14])
    res.extra["landmarks"] = [f[4:14].round(1).tolist() for f in faces]
    return res


class YuNetFace:
    """YuNet at each frame's own size (padded to multiples of 32, as OpenCV does).

    ``runtime="onnxruntime"`` (default) runs the frames of one call that share a padded size
    as one ONNX Runtime batch and decodes them with :func:`decode_yunet`; ``"opencv"`` runs
    ``cv2.FaceDetectorYN`` one frame at a time (the reference the tests compare against, and
    the fallback when the graph cannot be made batch- and size-dynamic).
    """

    name = Detector.FACE.value

    def __init__(
        self,
        model: Path,
        tier: str = "yunet",
        score_threshold: float = SCORE_THRESHOLD,
        runtime: Literal["onnxruntime", "opencv"] = "onnxruntime",
    ) -> None:
        require_file(model)
        self.tier = tier
        self.model_file = str(model)
        self.score_threshold = score_threshold
        self.net: BatchedModel | None = None
        self._cv: cv2.FaceDetectorYN | None = None
        if runtime == "onnxruntime":
            try:
                self.net = BatchedModel(model, spatial=True, check_hw=(96, 128), check_scale=255)
            except DetectorLoadError as exc:
                logger.warning("YuNet %s through OpenCV, one frame at a time: %s", model, exc)
        if self.net is None:
            try:
                self._cv = cv2.FaceDetectorYN.create(
                    str(model), "", (320, 320), score_threshold, NMS_THRESHOLD, TOP_K
                )
            except cv2.error as exc:
                raise DetectorLoadError(f"cannot load YuNet {model}: {exc}") from exc
        self.runtime = "onnxruntime" if self.net is not None else "opencv"
        self.batchable = self.net is not None and self.net.batchable
        self.provider = self.net.provider if self.net is not None else "opencv"
        self._lock = threading.Lock()  # the cv2 detector holds per-call state

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect faces; extra column ``landmarks`` holds 5 (x, y) points per face."""
        if self.net is None:
            return [_from_rows(self._detect_cv(f)) for f in frames]
        out: list[DetectorOutput | None] = [None] * len(frames)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault((_pad32(f.shape[0]), _pad32(f.shape[1])), []).append(i)
        for (ph, pw), idx in groups.items():
            x = self.preprocess([frames[i] for i in idx])
            outputs = dict(zip(self.net.output_names, self.net.run(x), strict=True))
            for j, i in enumerate(idx):
                row = {k: v[j] for k, v in outputs.items()}
                out[i] = _from_rows(decode_yunet(row, (ph, pw), self.score_threshold))
        return [o for o in out if o is not None]

    def preprocess(self, frames: list[npt.NDArray[np.uint8]]) -> F32:
        """``[N, 3, H', W']`` input of frames sharing one size padded to multiples of 32.

        Raw BGR 0..255 with zero padding bottom/right, as ``cv2.dnn.blobFromImage`` of
        OpenCV's padded frame.

        Raises:
            ValueError: the frames pad to different sizes.
        """
        sizes = {(_pad32(f.shape[0]), _pad32(f.shape[1])) for f in frames}
        if len(sizes) != 1:
            raise ValueError(f"frames pad to {len(sizes)} sizes; group them first")
        ph, pw = sizes.pop()
        x = np.zeros((len(frames), 3, ph, pw), np.float32)
        for j, frame in enumerate(frames):
            h, w = frame.shape[:2]
            x[j, :, :h, :w] = frame.transpose(2, 0, 1)
        return x

    def _detect_cv(self, frame: npt.NDArray[np.uint8]) -> F32:
        assert self._cv is not None
        with self._lock:
            h, w = frame.shape[:2]
            self._cv.setInputSize((w, h))
            _, found = self._cv.detect(frame)
        if found is None or len(found) == 0:
            return np.zeros((0, 15), np.float32)
        return cast(F32, found)  # YuNet rows are CV_32F


class HaarFace:
    """OpenCV's frontal-face Haar cascade (ships inside opencv-python-headless 4.x)."""

    name = Detector.FACE.value
    tier = "haar"

    def __init__(self) -> None:
        cascades = cv2.data.haarcascades  # type: ignore[attr-defined]  # cv2 stubs lack cv2.data
        path = Path(cascades) / "haarcascade_frontalface_default.xml"
        require_file(path)
        self.model_file = str(path)
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise DetectorLoadError(f"cannot load Haar cascade {path}")

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect frontal faces; scores squash the cascade's level weights into (0, 1)."""
        out = []
        for frame in frames:
            grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
            rects, _, weights = self._cascade.detectMultiScale3(
                grey,
                scaleFactor=1.1,
                minNeighbors=5,
                minSize=(24, 24),
                outputRejectLevels=True,
            )
            if len(rects) == 0:
                out.append(_faces(np.zeros((0, 4)), np.zeros(0)))
                continue
            boxes = np.asarray(rects, np.float32)
            boxes[:, 2:] += boxes[:, :2]
            scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1) / 2.0))
            out.append(_faces(boxes, scores))
        return out


# Tier factories (``inference.detectors.base.TIERS``): models_dir -> detector.


def yunet(models_dir: Path) -> YuNetFace:
    """YuNet-s 640 (the strongest face tier)."""
    return YuNetFace(models_dir / "yunet_s_640_640.onnx", "yunet")


def yunet_n(models_dir: Path) -> YuNetFace:
    """YuNet-n 640."""
    return YuNetFace(models_dir / "yunet_n_640_640.onnx", "yunet_n")


def haar(models_dir: Path) -> HaarFace:
    """OpenCV's Haar cascade (no model file)."""
    return HaarFace()
