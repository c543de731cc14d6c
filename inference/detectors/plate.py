"""Licence plates with plate text.

Tiers:
* ``y5fu`` / ``y5fu_640``: HyperLPR3's YOLOv5-style plate detector (box, 4 corners,
  single/double-layer class) → perspective warp → PP-OCRv4 recognition → plate grammar.
* ``ocr_det``: without the detector file, PP-OCRv4 text detection on the whole frame,
  each text line read and kept only when it is a valid plate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from citysight.config import Detector
from citysight.contracts import ObjectClass
from citysight.plates import normalise_plate
from inference.detectors.base import DetectorOutput
from inference.detectors.batching import BatchedModel
from inference.detectors.common import clip_boxes, letterbox, nms
from inference.detectors.ocr import TextDetector, TextRecognizer, order_quad, warp_quad
from inference.detectors.plate_grammar import Reading, correct_reading

CROP_SIZE = (168, 48)
DOUBLE_CROP_SIZE = (160, 100)
CROP_PADDINGS = (0.0, 0.04)
# A double-layer plate is 440×220 mm (aspect 2.0), a single-layer one 440×140 (3.1) or
# 480×140 (3.4, new energy). Crops between these bounds (padding, perspective) are read
# both ways and the more confident valid reading wins: a single-layer plate split in two
# can still pass the grammar with a wrong province.
DOUBLE_LAYER_MAX_ASPECT = 2.5
SURE_DOUBLE_ASPECT = 1.9
SURE_SINGLE_ASPECT = 2.9
#: A grammar-valid reading whose least confident character is below this is reported
#: unreadable (``""``) rather than risk a wrong plate. Chosen on synthetic degraded crops,
#: never on ../shared/data/eval (see docs/detectors.md, "Plate reading").
MIN_CHAR_CONF = 0.45

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class PlateRead:
    """What the plate reader made of one crop.

    Attributes:
        text: The plate (normalised), ``""`` when unreadable.
        score: Mean character confidence of the reading (0.0 when unreadable).
        plate_type: Grammar type (``plate_grammar.PATTERNS``), ``None`` when unreadable.
        min_conf: Least confident character of the best valid reading (0.0 if none).
        status: ``"ok"``; ``"no_plate"`` (no reading passed the grammar) or
            ``"low_confidence"`` (one did, below ``MIN_CHAR_CONF``): both unreadable.
        double: Read as a double-layer plate.
    """

    text: str
    score: float
    plate_type: str | None
    min_conf: float
    status: str
    double: bool

    @property
    def unreadable(self) -> bool:
        """True when no plate is reported (never a guess)."""
        return not self.text


def _aligned(chars: list[str], confs: list[float]) -> tuple[str, list[float]]:
    """Raw characters and confidences → normalised text with one confidence per character."""
    text, out = "", []
    for ch, c in zip(chars, confs, strict=True):
        n = normalise_plate(ch)
        text += n
        out += [c] * len(n)
    return text, out


def _reading(parts: list[tuple[list[str], list[float]]]) -> Reading | None:
    text, conf = "", []
    for chars, confs in parts:
        t, c = _aligned(chars, confs)
        text += t
        conf += c
    return correct_reading(text, conf)


def read_plate_full(
    rec: TextRecognizer,
    crop: npt.NDArray[np.uint8],
    double: bool | None = None,
    min_conf: float = MIN_CHAR_CONF,
) -> PlateRead:
    """Read a rectified plate crop (see :class:`PlateRead`).

    Args:
        rec: The recogniser.
        crop: BGR plate image, roughly the plate's extent.
        double: Double-layer plate; ``None`` decides from the aspect ratio (both ways
            when it is ambiguous).
        min_conf: Rejection threshold on the least confident character.
    """
    h, w = crop.shape[:2]
    aspect = w / max(1, h)
    if double is None:
        layouts = (
            [True]
            if aspect < SURE_DOUBLE_ASPECT
            else [False]
            if aspect >= SURE_SINGLE_ASPECT
            else [aspect < DOUBLE_LAYER_MAX_ASPECT, aspect >= DOUBLE_LAYER_MAX_ASPECT]
        )
    else:
        # A double-layer crop whose split fails is still read whole (a detector's layer
        # class is sometimes wrong).
        layouts = [True, False] if double else [False]
    best: tuple[Reading, bool] | None = None
    for dbl in layouts:
        if dbl:
            # Top row (province + letter) is narrower and about 40 % of the height.
            top = crop[: int(h * 0.42), int(w * 0.18) : int(w * 0.82)]
            bottom = crop[int(h * 0.36) :, :]
            r = _reading(rec.read_chars([top, bottom]))
        else:
            r = _reading(rec.read_chars([crop]))
        if r is not None and (best is None or r.min_conf > best[0].min_conf):
            best = (r, dbl)
        if best is not None and double is not None:
            break  # the caller knows the layout: the first valid reading stands
    if best is None:
        return PlateRead("", 0.0, None, 0.0, "no_plate", bool(layouts[0]))
    r, dbl = best
    if r.min_conf < min_conf:
        return PlateRead("", 0.0, None, r.min_conf, "low_confidence", dbl)
    return PlateRead(r.text, float(np.mean(r.conf)), r.plate_type, r.min_conf, "ok", dbl)


def read_plate(
    rec: TextRecognizer,
    crop: npt.NDArray[np.uint8],
    double: bool | None = None,
    min_conf: float = MIN_CHAR_CONF,
) -> tuple[str, float]:
    """Read a rectified plate crop; returns (valid plate text or ``""``, score).

    ``""`` (unreadable) when no reading passes the grammar or its least confident
    character is below ``min_conf``; see :func:`read_plate_full`.
    """
    r = read_plate_full(rec, crop, double, min_conf)
    return r.text, r.score


def _plates(
    boxes: Sequence[npt.ArrayLike], scores: list[float], texts: list[str], text_scores: list[float]
) -> DetectorOutput:
    n = len(scores)
    return DetectorOutput(
        boxes=np.asarray(boxes, np.float32).reshape(n, 4),
        scores=np.asarray(scores, np.float32),
        class_ids=np.full(n, int(ObjectClass.PLATE), np.int32),
        extra={"plate_text": list(texts), "plate_score": [round(s, 4) for s in text_scores]},
    )


class Y5fuPlate:
    """HyperLPR3 y5fu detector + PP-OCRv4 recognition."""

    name = Detector.PLATE.value

    def __init__(
        self,
        model: Path,
        tier: str,
        size: int,
        conf: float = 0.4,
        iou: float = 0.5,
        require_text: bool = False,
        min_char_conf: float = MIN_CHAR_CONF,
    ) -> None:
        self.tier = tier
        self.min_char_conf = min_char_conf
        self.model_file = str(model)
        self.net = BatchedModel(model)
        self.batchable = self.net.batchable
        self.provider = self.net.provider
        self.size = size
        self.conf = conf
        self.iou = iou
        self.require_text = require_text
        self._rec = TextRecognizer()

    def _raw_many(self, frames: list[npt.NDArray[np.uint8]]) -> list[npt.NDArray[np.floating[Any]]]:
        """Plate rows of each frame from one batched detector run (see :meth:`_decode`)."""
        preds: F32 = self.net.run(self.preprocess(frames))[0]
        # letterbox()'s scale: frame pixels = input pixels / scale
        scales = [min(self.size / f.shape[0], self.size / f.shape[1]) for f in frames]
        return [self._decode(p, s) for p, s in zip(preds, scales, strict=True)]

    def preprocess(self, frames: list[npt.NDArray[np.uint8]]) -> F32:
        """Letterboxed RGB ``[N, 3, S, S]`` 0..1 network input."""
        x = np.empty((len(frames), 3, self.size, self.size), np.float32)
        for i, frame in enumerate(frames):
            x[i] = letterbox(frame[:, :, ::-1], self.size, 0)[0].transpose(2, 0, 1)
        x /= 255.0
        return x

    def _decode(self, pred: F32, scale: float) -> npt.NDArray[np.floating[Any]]:
        """``(M, 14)`` rows in frame pixels: box, score, 4 corners, layer class."""
        pred = pred[pred[:, 4] > self.conf]
        if len(pred) == 0:
            return pred
        cls = pred[:, 13:15] * pred[:, 4:5]
        score = cls.max(axis=1)
        boxes = np.stack(
            [
                pred[:, 0] - pred[:, 2] / 2,
                pred[:, 1] - pred[:, 3] / 2,
                pred[:, 0] + pred[:, 2] / 2,
                pred[:, 1] + pred[:, 3] / 2,
            ],
            axis=1,
        )
        keep = nms(boxes, score, self.iou)
        # float64 once the int class column joins; (M, 14): box, score, 4 corners, class
        rows: npt.NDArray[np.floating[Any]] = np.concatenate(
            [boxes[keep], score[keep, None], pred[keep, 5:13], cls[keep].argmax(axis=1)[:, None]],
            axis=1,
        )
        rows[:, :4] /= scale
        rows[:, 5:13] /= scale
        return rows

    def _read(self, frame: npt.NDArray[np.uint8], quad: F32, double: bool) -> tuple[str, float]:
        size = DOUBLE_CROP_SIZE if double else CROP_SIZE
        # The corner points are sometimes a little tight or loose: read the exact and a
        # slightly padded warp and keep the most confident valid plate (19 → 20 of 21
        # CCPD scenes; the tight crop alone loses characters of 8-character plates).
        return _best_reading(
            [
                read_plate(
                    self._rec,
                    warp_quad(frame, _pad_quad(quad, p), size),
                    double,
                    self.min_char_conf,
                )
                for p in CROP_PADDINGS
            ]
        )

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect plates (one batched run) and read them (``plate_text`` ``""`` if unreadable)."""
        out = []
        for frame, rows in zip(frames, self._raw_many(frames) if frames else [], strict=True):
            h, w = frame.shape[:2]
            boxes, scores, texts, tscores = [], [], [], []
            for r in rows:
                double = bool(r[13] >= 1)
                quad = order_quad(r[5:13].reshape(4, 2))
                text, tsc = self._read(frame, quad, double)
                if self.require_text and not text:
                    continue
                boxes.append(r[:4])
                scores.append(float(r[4]))
                texts.append(text)
                tscores.append(tsc if text else 0.0)
            res = _plates(boxes, scores, texts, tscores)
            res.boxes = clip_boxes(res.boxes, w, h)
            out.append(res)
        return out


def _best_reading(readings: list[tuple[str, float]]) -> tuple[str, float]:
    valid = [r for r in readings if r[0]]
    return max(valid, key=lambda r: r[1]) if valid else ("", 0.0)


def _pad_quad(quad: F32, frac: float) -> npt.NDArray[np.floating[Any]]:
    """Grow a quad around its centre by ``frac`` of its size (keeps edge characters)."""
    c = quad.mean(axis=0)
    padded: npt.NDArray[np.floating[Any]] = c + (quad - c) * (1 + 2 * frac)
    return padded


class OcrDetPlate:
    """PP-OCRv4 text detection on the frame, kept when the reading is a valid plate."""

    name = Detector.PLATE.value
    tier = "ocr_det"

    def __init__(self, min_char_conf: float = MIN_CHAR_CONF) -> None:
        self.min_char_conf = min_char_conf
        self._det = TextDetector()
        self._rec = TextRecognizer()
        self.model_file = self._det.model_file

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect text lines and keep those reading as a plate."""
        out = []
        for frame in frames:
            boxes, scores, texts, tscores = [], [], [], []
            for quad, det_score in self._det(frame):
                qw = float(np.linalg.norm(quad[1] - quad[0]))
                qh = float(np.linalg.norm(quad[3] - quad[0]))
                if qh < 8 or qw < 2 * qh:
                    continue
                crop = warp_quad(frame, quad, (max(16, int(qw)), max(8, int(qh))))
                text, tsc = read_plate(self._rec, crop, False, self.min_char_conf)
                if not text:
                    continue
                boxes.append([*quad.min(axis=0), *quad.max(axis=0)])
                scores.append(det_score * tsc)
                texts.append(text)
                tscores.append(tsc)
            res = _plates(boxes, scores, texts, tscores)
            h, w = frame.shape[:2]
            res.boxes = clip_boxes(res.boxes, w, h)
            out.append(res)
        return out


# Tier factories (``inference.detectors.base.TIERS``): models_dir -> detector.


def y5fu(models_dir: Path) -> Y5fuPlate:
    """YOLOv5-face-style plate detector at 320 (the strongest plate tier)."""
    return Y5fuPlate(models_dir / "y5fu_320x_sim.onnx", "y5fu", 320)


def y5fu_640(models_dir: Path) -> Y5fuPlate:
    """The same detector at 640."""
    return Y5fuPlate(models_dir / "y5fu_640x_sim.onnx", "y5fu_640", 640)


def ocr_det(models_dir: Path) -> OcrDetPlate:
    """RapidOCR's text detector as a plate finder (no extra model file)."""
    return OcrDetPlate()
