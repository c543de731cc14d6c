"""Face detection (detection only: no embeddings, no identification).

Tiers: ``yunet`` (YuNet small), ``yunet_n`` (YuNet nano), ``haar`` (OpenCV's cascade).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from citysight.config import Detector
from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorLoadError, DetectorOutput, register_tier
from inference.detectors.common import require_file

logger = logging.getLogger(__name__)

SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
TOP_K = 5000


def _faces(boxes: npt.ArrayLike, scores: npt.ArrayLike) -> DetectorOutput:
    score_arr = np.asarray(scores, np.float32)
    return DetectorOutput(
        boxes=np.asarray(boxes, np.float32),
        scores=score_arr,
        class_ids=np.full(len(score_arr), int(ObjectClass.FACE), np.int32),
    )


class YuNetFace:
    """YuNet through ``cv2.FaceDetectorYN`` (input size set per frame size)."""

    name = Detector.FACE.value

    def __init__(
        self, model: Path, tier: str = "yunet", score_threshold: float = SCORE_THRESHOLD
    ) -> None:
        require_file(model)
        self.tier = tier
        self.model_file = str(model)
        try:
            self._det = cv2.FaceDetectorYN.create(
                str(model), "", (320, 320), score_threshold, NMS_THRESHOLD, TOP_K
            )
        except cv2.error as exc:
            raise DetectorLoadError(f"cannot load YuNet {model}: {exc}") from exc
        self._lock = threading.Lock()  # the cv2 detector holds per-call state

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect faces; extra column ``landmarks`` holds 5 (x, y) points per face."""
        out = []
        with self._lock:
            for frame in frames:
                h, w = frame.shape[:2]
                self._det.setInputSize((w, h))
                _, found = self._det.detect(frame)
                if found is None or len(found) == 0:
                    out.append(_faces(np.zeros((0, 4)), np.zeros(0)))
                    continue
                faces = cast(npt.NDArray[np.float32], found)  # YuNet rows are CV_32F
                boxes = faces[:, :4].copy()
                boxes[:, 2:] += boxes[:, :2]
                res = _faces(boxes, faces[:, 14])
                res.extra["landmarks"] = [f[4:14].round(1).tolist() for f in faces]
                out.append(res)
        return out


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


register_tier(
    Detector.FACE.value, "yunet", lambda d: YuNetFace(d / "yunet_s_640_640.onnx", "yunet")
)
register_tier(
    Detector.FACE.value, "yunet_n", lambda d: YuNetFace(d / "yunet_n_640_640.onnx", "yunet_n")
)
register_tier(Detector.FACE.value, "haar", lambda d: HaarFace())
