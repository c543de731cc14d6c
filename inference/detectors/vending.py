"""Street vending cues: COCO objects plus stationary new objects (class STALL).

Tiers, strongest first:

* ``picodet``: PP-PicoDet-S (COCO, 416 px) for persons, umbrellas, tables, chairs, bicycles,
  motorcycles and vehicles, run on every :data:`PICODET_EVERY`-th frame of each camera (the
  last result is held in between), plus the stationary-foreground cue on every frame.
* ``yolox``: YOLOX-nano (COCO, 416 px), the same classes, on every frame, plus the cue.
* ``hog``: OpenCV's HOG people detector plus the stationary-foreground cue.

Vending is a stationary phenomenon (the rule asks for minutes of dwell), so the network does
not need every analysed frame: PicoDet-S costs more per frame than YOLOX-nano on a CPU, and
running it at one frame in :data:`PICODET_EVERY` keeps the vending detector's amortised cost
below YOLOX-nano's (``benchmarks/vending``). The held boxes keep their tracks alive in
between; the stationary cue needs its background models updated at the analysis rate.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from citysight.config import Detector
from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorOutput
from inference.detectors.picodet import PicoDetModel
from inference.detectors.stationary import StationaryCue
from inference.detectors.yolo import Detections, YoloLayout, YoloModel, YoloSpec

#: Frames of a camera per PicoDet run (5 analysed frames: 1 run per second at the default
#: 5 fps analysis rate). ``CITYSIGHT_VENDING_EVERY`` overrides it (1 = every frame).
PICODET_EVERY = 5
EVERY_ENV = "CITYSIGHT_VENDING_EVERY"
#: Boxes covering more of the frame than this are dropped: on empty tarmac seen from above
#: PicoDet-S reports whole-frame "umbrella" / "dining table" / "car" boxes (the scene, not an
#: object), and no stall or vendor fills a street camera's whole view.
MAX_BOX_FRAC = 0.8

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


def every_from_env(default: int, env: dict[str, str] | None = None) -> int:
    """Frames per network run: ``CITYSIGHT_VENDING_EVERY`` when set, else ``default``.

    Raises:
        ValueError: the variable is not a whole number of at least 1.
    """
    raw = (os.environ if env is None else env).get(EVERY_ENV, "").strip()
    if not raw:
        return default
    try:
        every = int(raw)
    except ValueError:
        every = 0
    if every < 1:
        raise ValueError(f"{EVERY_ENV}={raw!r}: want a whole number of frames, at least 1")
    return every


class _NetVending(ABC):
    """A COCO network mapped to vending classes, plus stationary objects.

    The network runs on every ``every``-th frame of each camera (the first frame of a camera
    always); the frames in between get that camera's last network result again. The
    stationary cue runs on every frame.
    """

    name = Detector.VENDING.value
    tier = ""

    def __init__(self, model_file: str, net: Any, every: int) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.model_file = model_file
        self.net = net
        self.batchable = net.batchable
        self.provider = net.provider
        self.every = every
        self._cue = StationaryCue()
        self._lock = threading.Lock()
        # camera -> (frames since its last network run, frame shape, that run's output)
        self._held: dict[str, tuple[int, tuple[int, ...], DetectorOutput]] = {}

    @abstractmethod
    def _run(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        """The network's detections (COCO classes) of each of ``frames``."""

    def _mapped(self, det: Detections, shape: tuple[int, ...]) -> DetectorOutput:
        boxes, scores, cls = det
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = np.array([int(c) in COCO_TO_CLASS for c in cls], bool)
        keep &= area <= MAX_BOX_FRAC * shape[0] * shape[1]
        ids = [int(COCO_TO_CLASS[int(c)]) for c in cls[keep]]
        return DetectorOutput(
            boxes=boxes[keep], scores=scores[keep], class_ids=np.asarray(ids, np.int32)
        )

    def reset(self, camera_id: str | None = None) -> None:
        """Forget one camera's held result and background models (or all cameras')."""
        with self._lock:
            if camera_id is None:
                self._held.clear()
            else:
                self._held.pop(camera_id, None)
            self._cue.reset(camera_id)

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect vending-related objects (one batched run) and stationary objects."""
        with self._lock:
            # Which frames the network sees: a camera's first frame, every `every`-th one,
            # and a frame whose size changed (held boxes are in the old frame's pixels).
            due: list[int] = []
            since: dict[str, tuple[int, tuple[int, ...]]] = {
                c: (h[0], h[1]) for c, h in self._held.items()
            }
            for i, (frame, cam) in enumerate(zip(frames, camera_ids, strict=True)):
                prev = since.get(cam)
                if prev is None or prev[0] + 1 >= self.every or prev[1] != frame.shape:
                    due.append(i)
                    since[cam] = (0, frame.shape)
                else:
                    since[cam] = (prev[0] + 1, prev[1])
            ran = self._run([frames[i] for i in due]) if due else []
            fresh = dict(zip(due, ran, strict=True))
            out = []
            for i, (frame, cam) in enumerate(zip(frames, camera_ids, strict=True)):
                if i in fresh:
                    res = self._mapped(fresh[i], frame.shape)
                    self._held[cam] = (0, frame.shape, res)
                else:
                    n, shape, res = self._held[cam]
                    self._held[cam] = (n + 1, shape, res)
                sb, ss = self._cue(frame, cam)
                out.append(_with_stall(res, sb, ss))
            return out


class PicodetVending(_NetVending):
    """PP-PicoDet-S COCO detector mapped to vending classes, plus stationary objects.

    Args:
        model: ``picodet_s_416_coco.onnx``.
        conf: Minimum class score.
        every: Frames of a camera per network run (default :data:`PICODET_EVERY`, or
            ``CITYSIGHT_VENDING_EVERY``).
    """

    tier = "picodet"

    def __init__(self, model: Path, conf: float = 0.3, every: int | None = None) -> None:
        self._model = PicoDetModel(model, conf=conf)
        super().__init__(
            str(model),
            self._model.net,
            every if every is not None else every_from_env(PICODET_EVERY),
        )

    def preprocess(self, frames: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """The network input of ``frames`` (resized, normalised ``[N, 3, 416, 416]``)."""
        return self._model.preprocess(frames)

    def _run(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        return self._model.detect(frames)


class YoloxVending(_NetVending):
    """YOLOX-nano COCO detector mapped to vending classes, plus stationary objects.

    Args:
        model: ``yolox_nano.onnx``.
        conf: Minimum score (objectness × class score).
        every: Frames of a camera per network run (default 1: every frame).
    """

    tier = "yolox"

    def __init__(self, model: Path, conf: float = 0.3, every: int = 1) -> None:
        self._model = YoloModel(model, YoloSpec.for_layout(YoloLayout.YOLOX, 416), conf=conf)
        super().__init__(str(model), self._model.net, every)

    def preprocess(self, frames: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """The network input of ``frames`` (letterboxed ``[N, 3, 416, 416]``)."""
        return self._model.preprocess(frames)[0]

    def _run(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        return self._model.detect(frames)


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


def picodet(models_dir: Path) -> PicodetVending:
    """PP-PicoDet-S people/objects (the strongest vending tier)."""
    return PicodetVending(models_dir / "picodet_s_416_coco.onnx")


def yolox(models_dir: Path) -> YoloxVending:
    """YOLOX-nano people/objects."""
    return YoloxVending(models_dir / "yolox_nano.onnx")


def hog(models_dir: Path) -> HogVending:
    """OpenCV's HOG people detector (no model file)."""
    return HogVending()
