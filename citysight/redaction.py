"""Face redaction of anything shown without ``evidence:unredacted`` (fail closed).

One API for every evidence kind: :meth:`FaceRedactor.redact` takes a BGR frame and returns
a copy with every face blurred: the faces a detector finds in the frame at redaction time
plus any boxes the caller already knows (the faces recorded on an alert). Snapshots use it
today; clips (frame by frame) and report photos use the same call when they exist.

The detector is the project's face detector tiers (``services.inference.tiers["face"]``,
else ``yunet``, ``yunet_n``, ``haar``; the model files of ``services.inference.models_dir``),
run through OpenCV's own ``FaceDetectorYN`` (the reference the inference tier is tested
against), one frame at a time. It lives on the ground floor so every layer can redact.

Fail closed: when no tier loads, or the detector raises on a frame, :meth:`redact` raises
:class:`RedactionUnavailable` and the caller serves nothing; it never returns a frame in
which faces were not looked for. :meth:`FaceRedactor.status` is what ``/health`` shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from citysight.config import DETECTOR_TIERS, Detector, InferenceService

logger = logging.getLogger(__name__)

# Redaction favours recall: a blurred patch of wall costs little, a missed face is a leak.
# The live face detector keeps 0.6; YuNet's scores on real faces sit well above 0.5.
SCORE_THRESHOLD: Final = 0.5
NMS_THRESHOLD: Final = 0.3
FACE_PAD: Final = 0.15  # grow face boxes so hair and chin edges are covered too
YUNET_FILES: Final[dict[str, str]] = {
    "yunet": "yunet_s_640_640.onnx",
    "yunet_n": "yunet_n_640_640.onnx",
}

Frame = npt.NDArray[np.uint8]
Boxes = npt.NDArray[np.float32]
FaceFinder = Callable[[Frame], Boxes]
"""A BGR frame → ``(N, 4)`` float ``x1, y1, x2, y2`` face boxes in frame pixels."""


class RedactionUnavailable(RuntimeError):
    """Faces cannot be looked for (no detector, or it failed): show nothing."""


class _YuNet:
    """``cv2.FaceDetectorYN`` at each frame's own size (one frame at a time, locked)."""

    def __init__(self, model: Path, score_threshold: float) -> None:
        if not model.is_file():
            raise RedactionUnavailable(f"model file {model} is missing")
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(model), "", (320, 320), score_threshold, NMS_THRESHOLD, 5000
            )
        except cv2.error as exc:
            raise RedactionUnavailable(f"cannot load {model.name}: {type(exc).__name__}") from None
        self._lock = threading.Lock()  # the detector keeps per-call state

    def __call__(self, frame: Frame) -> Boxes:
        h, w = frame.shape[:2]
        with self._lock:
            self._net.setInputSize((w, h))
            _, found = self._net.detect(frame)
        if found is None or len(found) == 0:
            return np.zeros((0, 4), np.float32)
        boxes = np.asarray(found[:, :4], np.float32).copy()
        boxes[:, 2:] += boxes[:, :2]
        return boxes


class _Haar:
    """OpenCV's frontal-face cascade (no model file; the weakest tier)."""

    def __init__(self) -> None:
        cascades = cv2.data.haarcascades  # type: ignore[attr-defined]  # cv2 stubs lack cv2.data
        path = Path(cascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RedactionUnavailable(f"cannot load the Haar cascade {path}")
        self._lock = threading.Lock()

    def __call__(self, frame: Frame) -> Boxes:
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        with self._lock:
            rects = self._cascade.detectMultiScale(
                grey, scaleFactor=1.1, minNeighbors=4, minSize=(20, 20)
            )
        if len(rects) == 0:
            return np.zeros((0, 4), np.float32)
        boxes = np.asarray(rects, np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        return boxes


def face_tiers(cfg: InferenceService) -> list[str]:
    """The face tiers to try, strongest first (the operator's order when configured)."""
    return list(cfg.tiers.get(Detector.FACE.value) or DETECTOR_TIERS[Detector.FACE])


def blur_boxes(img: Frame, boxes: Iterable[Sequence[float]]) -> None:
    """Blur ``x1, y1, x2, y2`` pixel boxes of ``img`` in place (padded, clipped)."""
    h, w = img.shape[:2]
    for x1, y1, x2, y2 in boxes:
        px, py = (x2 - x1) * FACE_PAD, (y2 - y1) * FACE_PAD
        a, b = int(max(0, x1 - px)), int(max(0, y1 - py))
        c, d = int(min(w, x2 + px + 1)), int(min(h, y2 + py + 1))
        if c <= a or d <= b:
            continue
        roi = img[b:d, a:c]
        # Pixelate then blur: irreversible at any face size, unlike a small Gaussian kernel.
        small = cv2.resize(
            roi, (max(1, (c - a) // 12), max(1, (d - b) // 12)), interpolation=cv2.INTER_AREA
        )
        img[b:d, a:c] = cv2.GaussianBlur(
            cv2.resize(small, (c - a, d - b), interpolation=cv2.INTER_NEAREST), (0, 0), 3
        )


class FaceRedactor:
    """Blurs every face of a frame; refuses (raises) when it cannot look for faces.

    Args:
        finder: The face detector, or ``None`` when none could be loaded.
        tier: Name of the tier in use (``yunet``...), empty without a finder.
        reason: Why no finder is available (shown in ``/health``).
    """

    def __init__(self, finder: FaceFinder | None, tier: str = "", reason: str = "") -> None:
        self.finder = finder
        self.tier = tier
        self.reason = reason if finder is None else ""
        self.redacted = 0
        self.failures = 0
        self.last_error = ""
        self.last_ms = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls, cfg: InferenceService, *, score_threshold: float = SCORE_THRESHOLD
    ) -> FaceRedactor:
        """The first face tier of ``cfg`` that loads; one without a finder when none does."""
        models = Path(cfg.models_dir)
        tried: list[str] = []
        for tier in face_tiers(cfg):
            try:
                finder: FaceFinder = (
                    _Haar()
                    if tier == "haar"
                    else _YuNet(models / YUNET_FILES[tier], score_threshold)
                )
            except (RedactionUnavailable, KeyError) as exc:
                tried.append(f"{tier}: {exc}")
                logger.warning("face redaction tier %s unavailable: %s", tier, exc)
                continue
            if tried:
                logger.warning("face redaction runs on the %s tier (%s)", tier, "; ".join(tried))
            return cls(finder, tier)
        reason = "no face detector tier loads (" + "; ".join(tried) + ")"
        logger.error("face redaction unavailable, redacted views are refused: %s", reason)
        return cls(None, reason=reason)

    @property
    def available(self) -> bool:
        """Whether a detector is loaded."""
        return self.finder is not None

    def faces(self, frame: Frame) -> Boxes:
        """Face boxes the detector finds in ``frame``.

        Raises:
            RedactionUnavailable: no detector, or it failed on this frame.
        """
        if self.finder is None:
            raise RedactionUnavailable(self.reason or "no face detector")
        t0 = time.perf_counter()
        try:
            found = np.asarray(self.finder(frame), np.float32).reshape(-1, 4)
        except Exception as exc:
            with self._lock:
                self.failures += 1
                self.last_error = f"{type(exc).__name__} at {time.time():.0f}"
            logger.exception("face detector failed on a %s frame", frame.shape)
            raise RedactionUnavailable(f"face detector failed: {type(exc).__name__}") from None
        with self._lock:
            self.redacted += 1
            self.last_ms = (time.perf_counter() - t0) * 1000
            self.last_error = ""
        return found

    def redact(self, frame: Frame, known: Iterable[Sequence[float]] = ()) -> Frame:
        """A copy of a BGR ``frame`` with every face blurred (found now, plus ``known``).

        Args:
            frame: ``(H, W, 3)`` uint8 BGR image (left untouched).
            known: Extra ``x1, y1, x2, y2`` boxes to blur (e.g. faces recorded on an alert).

        Raises:
            RedactionUnavailable: faces could not be looked for; show nothing.
            ValueError: ``frame`` is not a BGR image.
        """
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {frame.shape}")
        found = self.faces(frame)
        out = frame.copy()
        blur_boxes(out, [*map(list, known), *found.tolist()])
        return out

    def status(self) -> dict[str, Any]:
        """Health component: ``running`` with a detector, ``failed`` without or after errors."""
        if self.finder is None:
            return {"state": "failed", "detail": {"reason": self.reason}}
        detail: dict[str, Any] = {
            "tier": self.tier,
            "redacted": self.redacted,
            "failures": self.failures,
            "last_ms": round(self.last_ms, 2),
        }
        if self.last_error:
            detail["last_error"] = self.last_error
        # The last frame failed: redacted views are being refused right now.
        return {"state": "degraded" if self.last_error else "running", "detail": detail}
