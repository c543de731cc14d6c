"""The project's trained fire/smoke box detector (ShuffleNetV2 + anchor-free heads), no torch.

The network (``inference.training.fire_det``) ships as ``fire_smoke_det.onnx``
(committed in ``inference/models/``; its ``MODEL_CARD.md`` there says what it was trained on,
how, and how it scored). This module
runs it with ONNX Runtime and decodes it in numpy:

* **Input** ``images`` float32 ``[N, 3, H, W]``: BGR ``0..255`` (normalisation is inside the
  graph). A frame is resized keeping its aspect ratio so its long side is
  ``input_long_side`` (320), placed top-left and padded with black to multiples of 32
  (a 16:9 frame becomes ``320 × 192``): the training images are letterboxed with black too.
* **Outputs** ``scores`` ``[N, A, C]`` (``sqrt(class · centre-ness)`` probabilities) and
  ``ltrb`` ``[N, A, 4]`` (distances in input pixels from each cell centre to the box sides).
  ``A`` runs over the cells of strides 8, 16 and 32 in that order, row-major; a cell centre
  is ``((x + 0.5) · s, (y + 0.5) · s)``.
* **Decode**: cells whose class score reaches that class's threshold (from the file's
  metadata, chosen on held-out training clips) become boxes; per-class NMS; boxes scaled
  back to frame pixels and clipped.

Every frame is scored on its own (no temporal state): a still image and a video frame get
the same answer. Persistence across frames belongs to the alert logic downstream.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorLoadError, DetectorOutput
from inference.detectors.common import (
    active_provider,
    clip_boxes,
    nms,
    ort_options,
    ort_session,
    require_file,
)

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

MODEL_FILE = "fire_smoke_det.onnx"
#: The trained file that ships with the project (in the package, so a wheel carries it too).
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / MODEL_FILE
#: Output strides of the network, in the order of its cells.
STRIDES: tuple[int, ...] = (8, 16, 32)
#: Input sides are padded to a multiple of the largest stride.
PAD_MULTIPLE = 32
DEFAULT_LONG_SIDE = 320
DEFAULT_THRESHOLD = 0.5
NMS_IOU = 0.5
MAX_DETECTIONS = 50
CLASS_MAP = {"fire": ObjectClass.FIRE, "smoke": ObjectClass.SMOKE}


@dataclass(frozen=True, slots=True)
class NetMeta:
    """What the ONNX file's metadata says about how to run it.

    Attributes:
        classes: Output class names, in order.
        thresholds: Per-class score thresholds.
        input_long_side: Long side of the network input (pixels).
        strides: Output strides, in cell order.
        extra: Every other metadata entry (training facts), as stored.
    """

    classes: tuple[str, ...] = ("fire", "smoke")
    thresholds: tuple[float, ...] = (DEFAULT_THRESHOLD, DEFAULT_THRESHOLD)
    input_long_side: int = DEFAULT_LONG_SIDE
    strides: tuple[int, ...] = STRIDES
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_props(cls, props: dict[str, str]) -> NetMeta:
        """Parse ``metadata_props`` (``classes``, ``thresholds``: JSON lists; the rest kept).

        Raises:
            ValueError: an entry is malformed or the lists disagree in length.
        """
        try:
            classes = tuple(str(c) for c in json.loads(props.get("classes", '["fire", "smoke"]')))
            raw = json.loads(props.get("thresholds", "null"))
            thresholds = (
                tuple(float(t) for t in raw)
                if raw is not None
                else tuple(DEFAULT_THRESHOLD for _ in classes)
            )
            side = int(props.get("input_long_side", DEFAULT_LONG_SIDE))
            strides = tuple(int(s) for s in json.loads(props.get("strides", json.dumps(STRIDES))))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad fire/smoke model metadata: {exc}") from exc
        if len(thresholds) != len(classes):
            raise ValueError(f"{len(thresholds)} thresholds for {len(classes)} classes")
        if side < PAD_MULTIPLE or side % PAD_MULTIPLE:
            raise ValueError(f"input_long_side {side} is not a positive multiple of {PAD_MULTIPLE}")
        known = {"classes", "thresholds", "input_long_side", "strides"}
        extra = {k: v for k, v in props.items() if k not in known}
        return cls(classes, thresholds, side, strides, extra)


def model_path(models_dir: Path) -> Path:
    """The file the ``det`` tier runs: ``models_dir/fire_smoke_det.onnx`` when an operator put
    one there (a retrained model), else the bundled :data:`BUNDLED_MODEL`."""
    own = Path(models_dir) / MODEL_FILE
    return own if own.is_file() else BUNDLED_MODEL


def input_shape(h: int, w: int, long_side: int) -> tuple[int, int, float]:
    """Network input ``(height, width)`` of an ``h × w`` frame and the resize scale."""
    scale = long_side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    ph = -(-nh // PAD_MULTIPLE) * PAD_MULTIPLE
    pw = -(-nw // PAD_MULTIPLE) * PAD_MULTIPLE
    return ph, pw, scale


def preprocess(frame: U8, long_side: int) -> tuple[F32, float]:
    """``[3, H, W]`` float32 BGR input of one frame and its scale (input px = frame px · s)."""
    h, w = frame.shape[:2]
    ph, pw, scale = input_shape(h, w, long_side)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    canvas = np.zeros((ph, pw, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1).astype(np.float32), scale


def cell_centres(h: int, w: int, strides: tuple[int, ...] = STRIDES) -> F32:
    """Cell centres ``[A, 2]`` (x, y input pixels) of an ``h × w`` input, in output order."""
    parts = []
    for s in strides:
        gh, gw = -(-h // s), -(-w // s)
        xs, ys = np.meshgrid(np.arange(gw), np.arange(gh))
        parts.append((np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32) + 0.5) * s)
    return np.concatenate(parts)


def decode(
    scores: F32,
    ltrb: F32,
    input_hw: tuple[int, int],
    thresholds: tuple[float, ...],
    strides: tuple[int, ...] = STRIDES,
    iou: float = NMS_IOU,
    max_detections: int = MAX_DETECTIONS,
) -> tuple[F32, F32, npt.NDArray[np.intp]]:
    """Boxes (input pixels), scores and class indices of one image's outputs.

    Args:
        scores: ``[A, C]`` class scores.
        ltrb: ``[A, 4]`` side distances (input pixels).
        input_hw: The network input's height and width.
        thresholds: Per-class minimum score.
        strides: Output strides.
        iou: Per-class NMS IoU.
        max_detections: Keep at most this many (highest scores first).

    Raises:
        ValueError: the outputs do not match the input's cells or the class count.
    """
    scores = np.asarray(scores, np.float32)
    ltrb = np.asarray(ltrb, np.float32)
    centres = cell_centres(*input_hw, strides)
    if scores.ndim != 2 or ltrb.shape != (len(centres), 4) or len(scores) != len(centres):
        raise ValueError(
            f"outputs {scores.shape} / {ltrb.shape} do not match {len(centres)} cells "
            f"of a {input_hw[0]}x{input_hw[1]} input"
        )
    if scores.shape[1] != len(thresholds):
        raise ValueError(f"{scores.shape[1]} classes in the output, {len(thresholds)} thresholds")
    cell, cls = np.nonzero(scores >= np.asarray(thresholds, np.float32)[None, :])
    conf = scores[cell, cls]
    c, d = centres[cell], ltrb[cell]
    boxes = np.concatenate([c - d[:, :2], c + d[:, 2:]], 1).astype(np.float32)
    # Per-class NMS in one call: classes are moved apart so they never overlap.
    offset = cls[:, None].astype(np.float32) * (4.0 * max(input_hw) + 1.0)
    keep = nms(boxes + offset, conf, iou)[:max_detections]
    return boxes[keep], conf[keep], cls[keep]


class FireSmokeNetModel:
    """ONNX Runtime session of the detector with its metadata; frames in, boxes out.

    Args:
        path: The ONNX file.
        thresholds: Per-class overrides of the file's thresholds.
        input_long_side: Override of the file's input size (multiple of 32).

    Raises:
        DetectorLoadError: the file is missing, corrupt, or not this network.
    """

    def __init__(
        self,
        path: Path,
        thresholds: tuple[float, ...] | None = None,
        input_long_side: int | None = None,
    ) -> None:
        require_file(path)
        opts = ort_options()
        self._sess = cast(Any, ort_session(path, opts.threads, opts.provider))
        self.provider = active_provider(self._sess)
        self.max_batch = opts.frames_per_run
        self.model_file = str(path)
        try:
            props = dict(self._sess.get_modelmeta().custom_metadata_map)
            meta = NetMeta.from_props(props)
        except ValueError as exc:
            raise DetectorLoadError(f"{path.name}: {exc}") from exc
        outs = [o.name for o in self._sess.get_outputs()]
        if outs != ["scores", "ltrb"]:
            raise DetectorLoadError(f"{path.name}: outputs {outs}, expected ['scores', 'ltrb']")
        self.input_name = self._sess.get_inputs()[0].name
        self.meta = meta
        self.thresholds = tuple(thresholds) if thresholds is not None else meta.thresholds
        if len(self.thresholds) != len(meta.classes):
            raise DetectorLoadError(f"{len(self.thresholds)} thresholds for {meta.classes}")
        self.long_side = input_long_side or meta.input_long_side
        if self.long_side % PAD_MULTIPLE:
            raise DetectorLoadError(f"input_long_side {self.long_side} is not a multiple of 32")
        self._lock = threading.Lock()
        # Fail at load (and let the caller fall back) rather than on the first frame.
        self.detect([np.zeros((64, 64, 3), np.uint8)])

    def run(self, x: F32) -> tuple[F32, F32]:
        """Raw ``scores`` and ``ltrb`` of a ``[N, 3, H, W]`` batch (chunks of ``max_batch``)."""
        outs_s, outs_d = [], []
        with self._lock:
            for i in range(0, len(x), self.max_batch):
                s, d = self._sess.run(
                    None, {self.input_name: np.ascontiguousarray(x[i : i + self.max_batch])}
                )
                outs_s.append(s)
                outs_d.append(d)
        return np.concatenate(outs_s), np.concatenate(outs_d)

    def raw(
        self, frames: list[U8], long_sides: list[int] | None = None
    ) -> list[tuple[F32, F32, tuple[int, int], float]]:
        """Per frame: ``scores``, ``ltrb``, the input ``(h, w)`` and the resize scale.

        Frames whose inputs have the same shape run as one batch; differently shaped inputs
        run apart, so a frame's result never depends on what else is in the call.

        Args:
            frames: BGR frames.
            long_sides: Per frame, the input long side (default: the model's).
        """
        sides = long_sides or [self.long_side] * len(frames)
        prepared = [preprocess(f, side) for f, side in zip(frames, sides, strict=True)]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (x, _) in enumerate(prepared):
            groups.setdefault((x.shape[1], x.shape[2]), []).append(i)
        out: list[tuple[F32, F32, tuple[int, int], float] | None] = [None] * len(frames)
        for hw, idx in groups.items():
            s, d = self.run(np.stack([prepared[i][0] for i in idx]))
            for k, i in enumerate(idx):
                out[i] = (s[k], d[k], hw, prepared[i][1])
        return [o for o in out if o is not None]

    def detect(
        self,
        frames: list[U8],
        long_sides: list[int] | None = None,
        thresholds: list[tuple[float, ...]] | None = None,
    ) -> list[tuple[F32, F32, npt.NDArray[np.intp]]]:
        """Boxes (frame pixels), scores and class indices per BGR frame.

        Args:
            frames: BGR frames.
            long_sides: Per frame, the input long side (default: the model's).
            thresholds: Per frame, per-class thresholds (default: the model's).
        """
        results = []
        ths = thresholds or [self.thresholds] * len(frames)
        for frame, (s, d, hw, scale), th in zip(
            frames, self.raw(frames, long_sides), ths, strict=True
        ):
            boxes, conf, cls = decode(s, d, hw, th, self.meta.strides)
            h, w = frame.shape[:2]
            results.append((clip_boxes(boxes / scale, w, h), conf, cls))
        return results


class NetFireSmoke:
    """Detector backend of the trained network (:class:`inference.detectors.base.DetectorBackend`),
    the ``det`` tier of ``fire_smoke``."""

    name = "fire_smoke"
    tier = "det"

    def __init__(self, model: Path, **kwargs: Any) -> None:
        self._model = FireSmokeNetModel(model, **kwargs)
        self.model_file = self._model.model_file
        self.provider = self._model.provider
        self.batchable = True
        self._ids = []
        for c in self._model.meta.classes:
            if c.lower() not in CLASS_MAP:
                raise DetectorLoadError(f"{model.name}: unknown class {c!r}")
            self._ids.append(int(CLASS_MAP[c.lower()]))

    @property
    def meta(self) -> NetMeta:
        """The model file's metadata."""
        return self._model.meta

    @property
    def thresholds(self) -> tuple[float, ...]:
        """Per-class score thresholds in use."""
        return self._model.thresholds

    @property
    def long_side(self) -> int:
        """The input long side in use when a frame asks for none."""
        return self._model.long_side

    def class_names(self) -> tuple[str, ...]:
        """The file's class names, lower case, in output order."""
        return tuple(c.lower() for c in self._model.meta.classes)

    def detect(
        self,
        frames: list[U8],
        camera_ids: list[str],
        long_sides: list[int] | None = None,
        thresholds: list[tuple[float, ...]] | None = None,
    ) -> list[DetectorOutput]:
        """Fire (class FIRE) and smoke (class SMOKE) boxes per frame; ``camera_ids`` unused
        (no temporal state).

        Args:
            frames: BGR ``uint8`` frames.
            camera_ids: Camera of each frame.
            long_sides: Per frame, the network input's long side (default: the file's).
            thresholds: Per frame, per-class score thresholds (default: the file's).
        """
        if len(frames) != len(camera_ids):
            raise ValueError(f"{len(frames)} frames but {len(camera_ids)} camera ids")
        if not frames:
            return []
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8 or min(f.shape[:2]) < 1:
                raise ValueError(f"expected BGR uint8 frames [H, W, 3], got {f.dtype} {f.shape}")
        ids = np.asarray(self._ids, np.int32)
        return [
            DetectorOutput(boxes=b, scores=s, class_ids=ids[c])
            for b, s, c in self._model.detect(frames, long_sides, thresholds)
        ]
