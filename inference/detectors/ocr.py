"""PP-OCRv4 text recognition and detection ONNX models from the rapidocr wheel.

Only the model files and the character set (stored in the recognition model's metadata)
are used; rapidocr's own pipeline is not imported (it expects the non-headless OpenCV).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any, cast

import cv2
import cv2.typing
import numpy as np
import numpy.typing as npt

from inference.detectors.base import DetectorLoadError
from inference.detectors.common import ort_options, ort_session

REC_MODEL = "ch_PP-OCRv4_rec_infer.onnx"
DET_MODEL = "ch_PP-OCRv4_det_infer.onnx"
REC_HEIGHT = 48

F32 = npt.NDArray[np.float32]


def rapidocr_model(name: str) -> Path:
    """Path of a model file inside the installed ``rapidocr_onnxruntime`` package.

    Raises:
        DetectorLoadError: the package or the file is not installed.
    """
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorLoadError("rapidocr_onnxruntime is not installed (pip install --no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise DetectorLoadError(f"{name} missing from rapidocr_onnxruntime at {path}")
    return path


class TextRecognizer:
    """PP-OCRv4 CTC recogniser: BGR line images → (text, mean char confidence)."""

    def __init__(self, model: Path | None = None) -> None:
        path = model or rapidocr_model(REC_MODEL)
        self.model_file = str(path)
        opts = ort_options()
        self._sess = ort_session(path, opts.threads, opts.provider)
        meta = self._sess.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
        if "character" not in meta:
            raise DetectorLoadError(f"{path} carries no character set")
        # CTC blank first, space last (PaddleOCR's convention with use_space_char).
        self.charset = ["", *meta["character"].splitlines(), " "]
        self._input = self._sess.get_inputs()[0].name  # type: ignore[attr-defined]
        self._lock = threading.Lock()

    def __call__(self, images: list[npt.NDArray[np.uint8]]) -> list[tuple[str, float]]:
        """Read each image (one text line); empty input gives an empty list."""
        return [("".join(c), float(np.mean(p)) if p else 0.0) for c, p in self.read_chars(images)]

    def read_chars(
        self, images: list[npt.NDArray[np.uint8]]
    ) -> list[tuple[list[str], list[float]]]:
        """Read each image into its characters and each character's confidence."""
        if not images:
            return []
        ratios = [im.shape[1] / max(1, im.shape[0]) for im in images]
        width = int(np.ceil(REC_HEIGHT * max(max(ratios), 320 / REC_HEIGHT)))
        batch = np.zeros((len(images), 3, REC_HEIGHT, width), np.float32)
        for i, (im, r) in enumerate(zip(images, ratios, strict=True)):
            w = min(width, int(np.ceil(REC_HEIGHT * r)))
            x = cv2.resize(im, (max(1, w), REC_HEIGHT)).astype(np.float32)
            batch[i, :, :, :w] = ((x / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
        with self._lock:
            probs = self._sess.run(None, {self._input: batch})[0]  # type: ignore[attr-defined]
        return [self._decode(p) for p in probs]

    def _decode(self, probs: F32) -> tuple[list[str], list[float]]:
        idx = probs.argmax(axis=1)
        conf = probs.max(axis=1)
        keep = np.ones(len(idx), bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        keep &= idx < len(self.charset)
        return [self.charset[i] for i in idx[keep]], [float(c) for c in conf[keep]]


class TextDetector:
    """PP-OCRv4 DB text detector: BGR frame → quadrilaterals with scores."""

    def __init__(self, model: Path | None = None, limit_side: int = 960) -> None:
        path = model or rapidocr_model(DET_MODEL)
        self.model_file = str(path)
        opts = ort_options()
        self._sess = ort_session(path, opts.threads, opts.provider)
        self._input = self._sess.get_inputs()[0].name  # type: ignore[attr-defined]
        self.limit_side = limit_side
        self._lock = threading.Lock()

    def __call__(
        self,
        frame: npt.NDArray[np.uint8],
        thresh: float = 0.3,
        box_thresh: float = 0.5,
        unclip: float = 1.6,
    ) -> list[tuple[F32, float]]:
        """Text quads ``(4, 2)`` in frame pixels (clockwise from top-left) with scores."""
        h, w = frame.shape[:2]
        s = min(1.0, self.limit_side / max(h, w))
        nh, nw = max(32, round(h * s / 32) * 32), max(32, round(w * s / 32) * 32)
        x = cv2.resize(frame, (nw, nh)).astype(np.float32)
        x = ((x / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        with self._lock:
            prob = self._sess.run(None, {self._input: x})[0][0, 0]  # type: ignore[attr-defined]
        mask = (prob > thresh).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        out = []
        for c in contours:
            if len(c) < 4:
                continue
            score = float(prob[mask.astype(bool) & _fill(mask.shape, c)].mean())
            if score < box_thresh:
                continue
            (cx, cy), (rw, rh), ang = cv2.minAreaRect(c)
            if min(rw, rh) < 3:
                continue
            # DB's unclip: grow by area * ratio / perimeter on every side.
            d = rw * rh * unclip / max(1e-6, 2 * (rw + rh))
            # boxPoints gives a float32 (4, 2) array
            quad = cast(F32, cv2.boxPoints(((cx, cy), (rw + 2 * d, rh + 2 * d), ang)))
            quad[:, 0] *= w / nw
            quad[:, 1] *= h / nh
            out.append((order_quad(quad), score))
        return out


def _fill(shape: tuple[int, ...], contour: cv2.typing.MatLike) -> npt.NDArray[np.bool_]:
    m = np.zeros(shape[:2], np.uint8)
    # cv2 stubs type the colour as a sequence; OpenCV takes a plain number as a Scalar too
    cv2.drawContours(m, [contour], -1, 1, -1)  # type: ignore[call-overload]
    return m.astype(bool)


def order_quad(pts: npt.NDArray[Any]) -> F32:
    """Order 4 points as top-left, top-right, bottom-right, bottom-left."""
    pts = np.asarray(pts, np.float32).reshape(4, 2)
    s = pts.sum(axis=1)
    d = pts[:, 1] - pts[:, 0]
    return np.array(
        [pts[s.argmin()], pts[d.argmin()], pts[s.argmax()], pts[d.argmax()]], np.float32
    )


def warp_quad(
    frame: npt.NDArray[np.uint8], quad: npt.NDArray[np.floating[Any]], size: tuple[int, int]
) -> npt.NDArray[np.uint8]:
    """Perspective-warp the quad (TL, TR, BR, BL) of ``frame`` to ``size`` (w, h)."""
    w, h = size
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    m = cv2.getPerspectiveTransform(np.asarray(quad, np.float32), dst)
    # warping a uint8 frame gives a uint8 image
    return cast(
        npt.NDArray[np.uint8],
        cv2.warpPerspective(
            frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ),
    )
