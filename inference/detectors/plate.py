"""Licence plates with plate text.

Tiers:
* ``y5fu`` / ``y5fu_640``: HyperLPR3's YOLOv5-style plate detector (box, 4 corners,
  single/double-layer class) → perspective warp → PP-OCRv4 recognition → plate grammar.
* ``ocr_det``: without the detector file, PP-OCRv4 text detection on the whole frame,
  each text line read and kept only when it is a valid plate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from citysight.config import Detector
from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorOutput
from inference.detectors.batching import BatchedModel
from inference.detectors.common import clip_boxes, letterbox, nms
from inference.detectors.ocr import TextDetector, TextRecognizer, order_quad, warp_quad
from inference.detectors.plate_grammar import correct

CROP_SIZE = (168, 48)
DOUBLE_CROP_SIZE = (160, 100)
CROP_PADDINGS = (0.0, 0.04)
# A double-layer plate is 440×220 mm; a single-layer one 440×140 mm.
DOUBLE_LAYER_MAX_ASPECT = 2.5

F32 = npt.NDArray[np.float32]


def read_plate(
    rec: TextRecognizer, crop: npt.NDArray[np.uint8], double: bool | None = None
) -> tuple[str, float]:
    """Read a rectified plate crop; returns (valid plate text or ``""``, score).

    Args:
        rec: The recogniser.
        crop: BGR plate image, roughly the plate's extent.
        double: Double-layer plate; ``None`` guesses from the aspect ratio.
    """
    h, w = crop.shape[:2]
    if double is None:
        double = w / max(1, h) < DOUBLE_LAYER_MAX_ASPECT
    if double:
        # Top row (province + letter) is narrower and about 40 % of the height.
        top = crop[: int(h * 0.42), int(w * 0.18) : int(w * 0.82)]
        bottom = crop[int(h * 0.36) :, :]
        (t_txt, t_sc), (b_txt, b_sc) = rec([top, bottom])
        text, score = correct(t_txt + b_txt), (t_sc + b_sc) / 2
        if text:
            return text, score
    candidates = rec([crop])
    txt, score = candidates[0]
    return correct(txt), score


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
    ) -> None:
        self.tier = tier
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
                read_plate(self._rec, warp_quad(frame, _pad_quad(quad, p), size), double)
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

    def __init__(self) -> None:
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
                text, tsc = read_plate(self._rec, crop, double=False)
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
