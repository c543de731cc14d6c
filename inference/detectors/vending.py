"""Street vending cues: COCO objects plus stationary new objects (class STALL).

Tiers:
* ``yolox``: YOLOX-nano (COCO, 416 px) for persons, umbrellas, tables, chairs, bicycles,
  motorcycles and vehicles, plus the stationary-foreground cue.
* ``hog``: OpenCV's HOG people detector plus the stationary-foreground cue.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from citysight.config import Detector
from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorOutput
from inference.detectors.stationary import StationaryCue
from inference.detectors.yolo import YoloLayout, YoloModel, YoloSpec

COCO_TO_CLASS: dict[int, ObjectClass] = {
    0: ObjectClass.PERSON,
    1: ObjectClass.BICYCLE,
    2: ObjectClass.VEHICLE,  # car
    3: ObjectClass.MOTORCYCLE,
    5: ObjectClass.VEHICLE,  # bus
    7: ObjectClass.VEHICLE,  # truck
    25: ObjectClass.UMBRELLA,
    56: ObjectClass.CHAIR,
    60: ObjectClass.TABLE,  # dining table
}


def _with_stall(
    out: DetectorOutput, boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32]
) -> DetectorOutput:
    return DetectorOutput.concat(
        [
            out,
            DetectorOutput(
                boxes=boxes,
                scores=scores,
                class_ids=np.full(len(scores), int(ObjectClass.STALL), np.int32),
            ),
        ]
    )


class YoloxVending:
    """YOLOX-nano COCO detector mapped to vending classes, plus stationary objects."""

    name = Detector.VENDING.value
    tier = "yolox"

    def __init__(self, model: Path, conf: float = 0.3) -> None:
        self._model = YoloModel(model, YoloSpec.for_layout(YoloLayout.YOLOX, 416), conf=conf)
        self.model_file = str(model)
        self.net = self._model.net
        self.batchable = self.net.batchable
        self.provider = self.net.provider
        self._cue = StationaryCue()
        self._lock = threading.Lock()

    def preprocess(self, frames: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """The network input of ``frames`` (letterboxed ``[N, 3, 416, 416]``)."""
        return self._model.preprocess(frames)[0]

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect vending-related objects (one batched YOLOX run) and stationary objects."""
        out = []
        dets = self._model.detect(frames)
        for frame, cam, (boxes, scores, cls) in zip(frames, camera_ids, dets, strict=True):
            keep = np.array([int(c) in COCO_TO_CLASS for c in cls], bool)
            ids = [int(COCO_TO_CLASS[int(c)]) for c in cls[keep]]
            res = DetectorOutput(
                boxes=boxes[keep], scores=scores[keep], class_ids=np.asarray(ids, np.int32)
            )
            with self._lock:
                sb, ss = self._cue(frame, cam)
            out.append(_with_stall(res, sb, ss))
        return out


class HogVending:
    """OpenCV HOG people detector plus stationary objects."""

    name = Detector.VENDING.value
    tier = "hog"
    model_file = ""

    def __init__(self) -> None:
        self._hog = cv2.HOGDescriptor()
        # cv2 stubs declare only HOGDescriptor.getDefaultPeopleDetector, not this alias
        people = cv2.HOGDescriptor_getDefaultPeopleDetector()  # type: ignore[attr-defined]
        self._hog.setSVMDetector(people)
        self._cue = StationaryCue()
        self._lock = threading.Lock()

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect people (HOG) and stationary new objects."""
        out = []
        for frame, cam in zip(frames, camera_ids, strict=True):
            with self._lock:
                rects, weights = self._hog.detectMultiScale(
                    frame, winStride=(8, 8), padding=(8, 8), scale=1.05
                )
                sb, ss = self._cue(frame, cam)
            boxes = np.asarray(rects, np.float32).reshape(-1, 4)
            boxes[:, 2:] += boxes[:, :2]
            scores = 1 / (1 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
            res = DetectorOutput(
                boxes=boxes, scores=scores, class_ids=np.full(len(scores), int(ObjectClass.PERSON))
            )
            out.append(_with_stall(res, sb, ss))
        return out


# Tier factories (``inference.detectors.base.TIERS``): models_dir -> detector.


def yolox(models_dir: Path) -> YoloxVending:
    """YOLOX-nano people/objects (the strongest vending tier)."""
    return YoloxVending(models_dir / "yolox_nano.onnx")


def hog(models_dir: Path) -> HogVending:
    """OpenCV's HOG people detector (no model file)."""
    return HogVending()
