"""Stationary-foreground cue: dual running-average background model per camera.

A pixel that differs from the slow background but matches the fast one has changed and
then stopped changing: a new object that stays (a stall, a parked cart). This finds street
stalls that a COCO detector has no class for.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from inference.detectors.fire_smoke import regions

WORK_WIDTH = 320


@dataclass
class _Models:
    fast: npt.NDArray[np.float32]
    slow: npt.NDArray[np.float32]
    frames: int = 0


class StationaryCue:
    """Per-camera dual background model emitting boxes of stationary new objects.

    Args:
        fast_alpha: Learning rate of the fast model (absorbs an object within ~1/alpha frames).
        slow_alpha: Learning rate of the slow model (keeps the empty scene far longer).
        diff_threshold: Grey-level difference that counts as foreground.
        min_area_frac: Smallest region, as a fraction of the frame.
        warmup_frames: Frames before the cue reports anything.
    """

    def __init__(
        self,
        fast_alpha: float = 0.2,
        slow_alpha: float = 0.002,
        diff_threshold: int = 25,
        min_area_frac: float = 0.004,
        warmup_frames: int = 10,
    ) -> None:
        self.fast_alpha = fast_alpha
        self.slow_alpha = slow_alpha
        self.diff_threshold = diff_threshold
        self.min_area_frac = min_area_frac
        self.warmup_frames = warmup_frames
        self._cams: dict[str, _Models] = {}

    def reset(self, camera_id: str | None = None) -> None:
        """Forget one camera's models (or all)."""
        if camera_id is None:
            self._cams.clear()
        else:
            self._cams.pop(camera_id, None)

    def __call__(
        self, frame: npt.NDArray[np.uint8], camera_id: str
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Update the camera's models; boxes (frame pixels) and scores of stationary objects."""
        h, w = frame.shape[:2]
        scale = WORK_WIDTH / w
        small = cv2.resize(
            frame, (WORK_WIDTH, max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        g = grey.astype(np.float32)
        m = self._cams.get(camera_id)
        if m is None or m.fast.shape != g.shape:
            self._cams[camera_id] = _Models(g.copy(), g.copy(), 1)
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        cv2.accumulateWeighted(g, m.fast, self.fast_alpha)
        cv2.accumulateWeighted(g, m.slow, self.slow_alpha)
        m.frames += 1
        if m.frames < self.warmup_frames:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        fg_slow = np.abs(g - m.slow) > self.diff_threshold
        fg_fast = np.abs(g - m.fast) > self.diff_threshold
        mask = (fg_slow & ~fg_fast).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        min_area = max(16, int(self.min_area_frac * mask.size))
        boxes, scores = regions(mask, min_area, scale)
        return boxes, scores * 0.6  # a weak cue: the rules layer asks for persistence
