"""Fire and smoke.

Tiers (strongest first):
* ``det``: citysight's trained fire/smoke box detector (ShuffleNetV2 + anchor-free heads,
  ``inference.detectors.fire_smoke_net``), shipped in ``inference/models/`` with its model
  card; an operator's ``fire_smoke_det.onnx`` in the models dir replaces it. On video a box
  must persist and flicker (fire) or drift (smoke) across the camera's recent frames
  (``inference.detectors.fire_smoke_temporal``); a still image gets the per-frame answer.
* ``yolo``: operator-supplied YOLO-format weights, ``fire_smoke.onnx`` in the models dir,
  with an optional ``fire_smoke.json`` (``{"layout": "yolov8", "classes": ["fire",
  "smoke"]}``) — no licence-clean pretrained weights ship with the project.
* ``cnn``: a small whole-frame fire/smoke classifier, ``fire_smoke_cls.onnx`` (trained with
  ``python -m inference.training.train_cls``) with its sidecar ``fire_smoke_cls.json``, run
  through ONNX Runtime; optional 2×2 tiles give coarse boxes; a short per-camera
  persistence (k of the last n frames) suppresses one-frame blips.
* ``classical``: colour + flicker for fire, low-saturation moving/hazy regions for smoke,
  with per-camera temporal state. On a camera's first frame (or a still image) there is no
  motion history, so stricter single-frame rules apply.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from citysight.config import Detector
from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorOutput
from inference.detectors.common import active_provider, ort_options, ort_session, require_file
from inference.detectors.fire_smoke_net import NetFireSmoke, model_path
from inference.detectors.yolo import YoloModel, YoloSpec

if TYPE_CHECKING:
    from inference.detectors.fire_smoke_temporal import TemporalFireSmoke

WORK_WIDTH = 320
HISTORY = 4


@dataclass
class _CamState:
    greys: deque[npt.NDArray[np.uint8]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    colours: deque[npt.NDArray[np.uint8]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    background: npt.NDArray[np.float32] | None = None
    texture: cv2.typing.MatLike | None = None
    smoke_acc: cv2.typing.MatLike | None = None
    frames: int = 0


def fire_colour_mask(bgr: npt.NDArray[np.uint8], strict: bool = False) -> npt.NDArray[np.uint8]:
    """Fire-coloured pixels: RGB ordering/saturation rule ∧ YCrCb rule (Chen; Celik).

    Args:
        bgr: BGR ``uint8`` image.
        strict: Raise the thresholds (single-frame use, where no flicker can confirm).
    """
    b, g, r = (bgr[:, :, i].astype(np.int32) for i in range(3))
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    s = hsv[:, :, 1].astype(np.int32)
    # Thresholds tuned on the dev sets of ../shared/data/eval (small: a first signal only).
    r_t = 190 if strict else 170
    rgb_rule = (r > r_t) & (r >= g) & (g > b)
    # Chen's saturation rule: bright red pixels may be less saturated (flame cores).
    rgb_rule &= s * r_t >= (255 - r) * 60
    ycc = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb).astype(np.int16)
    y, cr, cb = ycc[:, :, 0], ycc[:, :, 1], ycc[:, :, 2]
    ycc_rule = (y > cb) & (cr > cb) & (y > y.mean()) & (cr > cr.mean())
    if strict:
        ycc_rule &= (cr - cb) > 40
        # Flames are among the brightest parts of the scene.
        ycc_rule &= y >= np.percentile(y, 80)
    mask: npt.NDArray[np.uint8] = (rgb_rule & ycc_rule).astype(np.uint8)
    return mask


def haze_mask(bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Hazy pixels: high dark channel, low saturation, little local texture (smoke/fog)."""
    dark = cv2.erode(bgr.min(axis=2), np.ones((7, 7), np.uint8))
    s = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[:, :, 1]
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    grad = cv2.blur(np.abs(cv2.Laplacian(grey, cv2.CV_16S)).astype(np.float32), (9, 9))
    return ((dark > 100) & (s < 50) & (grad < 4)).astype(np.uint8)


def regions(
    mask: cv2.typing.MatLike, min_area: int, scale: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Connected regions above ``min_area`` → boxes (frame pixels) and area fill scores."""
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes, scores = [], []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < min_area:
            continue
        boxes.append([x / scale, y / scale, (x + w) / scale, (y + h) / scale])
        scores.append(min(0.99, 0.5 + 0.5 * area / max(1, w * h) * min(1.0, area / (4 * min_area))))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32)


class ClassicalFireSmoke:
    """Classical fire (colour ∧ flicker) and smoke (grey moving or hazy regions) cues."""

    name = Detector.FIRE_SMOKE.value
    tier = "classical"
    model_file = ""

    def __init__(
        self,
        min_area_frac: float = 0.002,
        smoke_min_area_frac: float = 0.04,
        flicker_threshold: int = 12,
        min_flicker_frac: float = 0.15,
        colour_persist: int = 2,
        strict_video_colour: bool = True,
        smoke_persist: float = 0.9,
        smoke_max_delta: int = 40,
        fire: bool = True,
    ) -> None:
        # fire=False: the smoke cue alone (the trained tier borrows it for faint smoke on
        # video) at a fraction of the cost.
        self.fire = fire
        self.smoke_max_delta = smoke_max_delta
        self.min_flicker_frac = min_flicker_frac
        self.colour_persist = colour_persist
        self.strict_video_colour = strict_video_colour
        self.smoke_persist = smoke_persist
        self.min_area_frac = min_area_frac
        self.smoke_min_area_frac = smoke_min_area_frac
        self.flicker_threshold = flicker_threshold
        self._state: dict[str, _CamState] = {}
        self._lock = threading.Lock()

    def reset(self, camera_id: str | None = None) -> None:
        """Forget the temporal state of one camera (or all)."""
        with self._lock:
            if camera_id is None:
                self._state.clear()
            else:
                self._state.pop(camera_id, None)

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect fire (class FIRE) and smoke (class SMOKE) regions."""
        with self._lock:
            return [self._one(f, c) for f, c in zip(frames, camera_ids, strict=True)]

    def _one(self, frame: npt.NDArray[np.uint8], camera_id: str) -> DetectorOutput:
        h, w = frame.shape[:2]
        scale = WORK_WIDTH / w
        # OpenCV's stubs type results as MatLike; resize, cvtColor and blur keep uint8.
        small = cast(
            npt.NDArray[np.uint8],
            cv2.resize(frame, (WORK_WIDTH, max(1, round(h * scale))), interpolation=cv2.INTER_AREA),
        )
        grey = cast(
            npt.NDArray[np.uint8],
            cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0),
        )
        st = self._state.get(camera_id)
        if st is None or (st.greys and st.greys[-1].shape != grey.shape):
            st = self._state[camera_id] = _CamState()
        area = small.shape[0] * small.shape[1]
        still = not st.greys
        colour = (
            fire_colour_mask(small, strict=still or self.strict_video_colour)
            if self.fire
            else np.zeros(grey.shape, np.uint8)
        )
        if still:
            fire_mask = colour
            fire_min = int(self.min_area_frac * area * 2)
            smoke_mask = haze_mask(small)
            smoke_min = int(area * 0.15)  # a still smoke cue must cover much of the view
        else:
            if self.fire:
                fire_mask, fire_min = self._fire_video(st, grey, colour, area)
            else:
                fire_mask, fire_min = colour, 0
            smoke_mask, smoke_min = self._smoke_video(st, small, grey, area)
        st.greys.append(grey)
        if st.background is None:
            st.background = grey.astype(np.float32)
        else:
            cv2.accumulateWeighted(grey.astype(np.float32), st.background, 0.02)
        st.frames += 1
        st.colours.append(colour)
        fb, fs = regions(fire_mask, max(4, fire_min), scale)
        sb, ss = regions(smoke_mask, max(16, smoke_min), scale)
        return DetectorOutput(
            boxes=np.concatenate([fb, sb]),
            scores=np.concatenate([fs, ss]),
            class_ids=np.concatenate(
                [np.full(len(fs), int(ObjectClass.FIRE)), np.full(len(ss), int(ObjectClass.SMOKE))]
            ),
        )

    def _fire_video(
        self,
        st: _CamState,
        grey: npt.NDArray[np.uint8],
        colour: npt.NDArray[np.uint8],
        area: int,
    ) -> tuple[npt.NDArray[np.uint8], int]:
        """Fire: fire-coloured now and at the same place in recent frames (flames stay put,
        a passing orange car or jacket moves on), with enough flicker inside each region."""
        seen = colour.astype(np.int32)
        for prev in st.colours:
            seen += prev
        mask = colour & (seen >= min(len(st.colours) + 1, self.colour_persist + 1))
        diff = np.zeros_like(grey)
        for prev in st.greys:
            diff = np.maximum(diff, cv2.absdiff(grey, prev))
        flicker = diff > self.flicker_threshold
        _, labels = cv2.connectedComponents(mask, connectivity=8)
        sizes = np.bincount(labels.ravel())
        flickering = np.bincount(labels.ravel(), weights=flicker.ravel(), minlength=len(sizes))
        keep = flickering / np.maximum(sizes, 1) >= self.min_flicker_frac
        return (keep[labels] & (labels > 0)).astype(np.uint8), int(self.min_area_frac * area)

    def _smoke_video(
        self,
        st: _CamState,
        small: npt.NDArray[np.uint8],
        grey: npt.NDArray[np.uint8],
        area: int,
    ) -> tuple[npt.NDArray[np.uint8], int]:
        """Smoke: greyish, hazy foreground that blurs the texture behind it, persisting."""
        assert st.background is not None
        texture = cv2.blur(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), (9, 9))
        if st.texture is None:
            st.texture = texture.copy()
            st.smoke_acc = np.zeros_like(texture)
        delta = cv2.absdiff(grey, st.background.astype(np.uint8))
        # Smoke is semi-transparent: it shifts the background a little, while a solid
        # object (a person in grey) replaces it.
        fg = (delta > 8) & (delta < self.smoke_max_delta)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        greyish = (hsv[:, :, 1] < 60) & (hsv[:, :, 2] > 80) & (hsv[:, :, 2] < 235)
        blurred = (texture < 0.6 * st.texture) & (st.texture > 2)
        cand = (fg & greyish & blurred).astype(np.float32)
        assert st.smoke_acc is not None
        cv2.accumulateWeighted(cand, st.smoke_acc, 0.4)
        cv2.accumulateWeighted(texture, st.texture, 0.02)
        mask = (st.smoke_acc > self.smoke_persist).astype(np.uint8)
        return mask, int(self.smoke_min_area_frac * area)


class YoloFireSmoke:
    """Operator-supplied YOLO-format fire/smoke weights."""

    name = Detector.FIRE_SMOKE.value
    tier = "yolo"

    def __init__(self, model: Path) -> None:
        require_file(model)
        meta_path = model.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        classes = [str(c).lower() for c in meta.get("classes", ["fire", "smoke"])]
        spec = None
        if "layout" in meta:
            spec = YoloSpec.for_layout(meta["layout"], int(meta.get("size", 640)))
        self._model = YoloModel(model, spec, conf=float(meta.get("conf", 0.35)))
        self.model_file = str(model)
        self.net = self._model.net
        self.batchable = self.net.batchable
        self.provider = self.net.provider
        self._map = {
            i: (ObjectClass.SMOKE if "smoke" in c else ObjectClass.FIRE)
            for i, c in enumerate(classes)
            if "fire" in c or "smoke" in c
        }

    def preprocess(self, frames: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """The network input of ``frames`` (letterboxed ``[N, 3, S, S]``)."""
        return self._model.preprocess(frames)[0]

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect with the YOLO model, keeping fire and smoke classes."""
        out = []
        for boxes, scores, cls in self._model.detect(frames):
            keep = np.array([int(c) in self._map for c in cls], bool)
            ids = np.asarray([int(self._map[int(c)]) for c in cls[keep]], np.int32)
            out.append(DetectorOutput(boxes=boxes[keep], scores=scores[keep], class_ids=ids))
        return out


class CnnFireSmoke:
    """Whole-frame fire/smoke classifier (``inference.training.train_cls`` ONNX export).

    The model takes ``[N, 3, S, S]`` RGB ``0..1`` (the frame resized without letterbox) and
    returns ``[N, C]`` probabilities for the classes named in the sidecar JSON. A class is
    reported when the whole frame scores at least ``threshold`` in ``persist`` of the last
    ``window`` frames of that camera (on a camera's first frames: in all of them so far). Its
    box is the union of the 2×2 tiles scoring above the threshold, or the whole frame when no
    tile does (``tiles=False``: always the whole frame).

    Args:
        model: ONNX file; ``<model>.json`` (optional) gives ``classes``, ``size``,
            ``threshold``.
        threshold: Overrides the sidecar's threshold.
        tiles: Score the four quarter tiles too, to localise.
        persist: Positive frames needed within the window.
        window: Frames remembered per camera.
    """

    name = Detector.FIRE_SMOKE.value
    tier = "cnn"

    def __init__(
        self,
        model: Path,
        threshold: float | None = None,
        tiles: bool = True,
        persist: int = 2,
        window: int = 3,
    ) -> None:
        require_file(model)
        meta_path = model.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        classes = [str(c).lower() for c in meta.get("classes", ["fire", "smoke"])]
        self.size = int(meta.get("size", 128))
        self.threshold = float(threshold if threshold is not None else meta.get("threshold", 0.5))
        self.tiles = tiles
        self.persist = persist
        self.window = window
        ort_opts = ort_options()
        self._session = cast(Any, ort_session(model, ort_opts.threads, ort_opts.provider))
        self._input = self._session.get_inputs()[0].name
        self.provider = active_provider(self._session)
        # The exported classifier takes any batch: every crop of every frame in one call.
        self.batchable = not isinstance(self._session.get_inputs()[0].shape[0], int)
        self.max_batch = ort_opts.frames_per_run
        self.model_file = str(model)
        self._map = {
            i: (ObjectClass.SMOKE if "smoke" in c else ObjectClass.FIRE)
            for i, c in enumerate(classes)
            if "fire" in c or "smoke" in c
        }
        self._history: dict[str, deque[npt.NDArray[np.bool_]]] = {}
        self._lock = threading.Lock()
        # Fail now (and fall back) rather than on the first frame if the model is unusable.
        self.scores(np.zeros((self.size, self.size, 3), np.uint8))

    def reset(self, camera_id: str | None = None) -> None:
        """Forget the persistence state of one camera (or all)."""
        with self._lock:
            if camera_id is None:
                self._history.clear()
            else:
                self._history.pop(camera_id, None)

    def _crops(self, frame: npt.NDArray[np.uint8]) -> list[tuple[float, float, float, float]]:
        h, w = frame.shape[:2]
        crops = [(0.0, 0.0, float(w), float(h))]
        if self.tiles:
            hx, hy = w / 2, h / 2
            crops += [(x, y, x + hx, y + hy) for y in (0.0, hy) for x in (0.0, hx)]
        return crops

    def scores(
        self, frame: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], list[tuple[float, float, float, float]]]:
        """Probabilities ``[1 + tiles, C]`` of the whole frame (row 0) and its tiles."""
        return self.scores_many([frame])[0]

    def scores_many(
        self, frames: list[npt.NDArray[np.uint8]]
    ) -> list[tuple[npt.NDArray[np.float32], list[tuple[float, float, float, float]]]]:
        """:meth:`scores` of each frame, all crops of all frames in as few runs as allowed."""
        crops = [self._crops(f) for f in frames]
        batch = []
        for frame, frame_crops in zip(frames, crops, strict=True):
            for x1, y1, x2, y2 in frame_crops:
                part: cv2.typing.MatLike = frame[
                    int(y1) : max(int(y1) + 1, int(y2)), int(x1) : max(int(x1) + 1, int(x2))
                ]
                part = cv2.resize(part, (self.size, self.size), interpolation=cv2.INTER_AREA)
                batch.append(cv2.cvtColor(part, cv2.COLOR_BGR2RGB))
        x = np.stack(batch).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        per = len(crops[0])
        # Whole frames per call: a frame's crops always share one run.
        step = per * max(1, self.max_batch // per) if self.batchable else per
        probs = np.concatenate(
            [
                np.asarray(self._session.run(None, {self._input: x[i : i + step]})[0], np.float32)
                for i in range(0, len(x), step)
            ]
        )
        return [(probs[k * per : (k + 1) * per], c) for k, c in enumerate(crops)]

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Classify each frame; fire (class FIRE) and smoke (class SMOKE) regions."""
        out = []
        all_scores = self.scores_many(frames) if frames else []
        for (probs, crops), cam in zip(all_scores, camera_ids, strict=True):
            with self._lock:
                hist = self._history.setdefault(cam, deque(maxlen=self.window))
                hist.append(probs[0] >= self.threshold)
                seen = np.sum(np.stack(hist), axis=0)
                need = min(self.persist, len(hist))
            boxes: list[list[Any]] = []
            scores: list[float] = []
            ids: list[int] = []
            for j, cls in self._map.items():
                if seen[j] < need or probs[0, j] < self.threshold:
                    continue
                hot = [k for k in range(1, len(crops)) if probs[k, j] >= self.threshold]
                if hot:
                    b = np.asarray([crops[k] for k in hot], np.float32)
                    box = [b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()]
                else:
                    box = list(crops[0])
                boxes.append(box)
                scores.append(float(probs[0, j]))
                ids.append(int(cls))
            out.append(
                DetectorOutput(
                    boxes=np.asarray(boxes, np.float32),
                    scores=np.asarray(scores, np.float32),
                    class_ids=np.asarray(ids, np.int32),
                )
            )
        return out


# Tier factories (``inference.detectors.base.TIERS``): models_dir -> detector.


def det(models_dir: Path) -> TemporalFireSmoke:
    """citysight's trained fire/smoke box detector with per-camera temporal confirmation (the
    strongest tier; the file ships with the project, an operator's ``fire_smoke_det.onnx`` in
    ``models_dir`` replaces it)."""
    # Imported here: the temporal module uses this module's classical smoke cue.
    from inference.detectors.fire_smoke_temporal import TemporalFireSmoke

    return TemporalFireSmoke(NetFireSmoke(model_path(models_dir)))


def yolo(models_dir: Path) -> YoloFireSmoke:
    """The operator-supplied YOLO fire/smoke detector."""
    return YoloFireSmoke(models_dir / "fire_smoke.onnx")


def cnn(models_dir: Path) -> CnnFireSmoke:
    """citysight's own fire/smoke patch classifier."""
    return CnnFireSmoke(models_dir / "fire_smoke_cls.onnx")


def classical(models_dir: Path) -> ClassicalFireSmoke:
    """Colour and motion rules (no model file)."""
    return ClassicalFireSmoke()
