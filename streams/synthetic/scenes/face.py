"""``face`` scene: a real face photograph walking slowly along an indoor corridor.

Image source: ``skimage.data.astronaut()`` from the scikit-image package (bundled in
the wheel, no download). It is the NASA portrait of astronaut Eileen Collins
(photo S94-34593), a work of the US federal government and so in the public domain;
scikit-image lists it as such in its data README.

The head-and-shoulders part of the photo is cut out with a soft mask and composited
onto a drawn corridor; it drifts sideways and bobs as if walking, face about 150 px
tall at 960 x 540.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from streams.synthetic.drawing import (
    FloatImage,
    Image,
    blend_into,
    fill_poly_gradient,
    vertical_gradient,
)
from streams.synthetic.scenes.base import Scene

# Head-and-shoulders crop of the 512 x 512 astronaut photo (x1, y1, x2, y2); the face
# (hairline to chin) is about 125 px tall in the source.
_CROP = (20, 8, 372, 340)
# Scale at 960 px frame width: face ~155 px tall.
_SCALE = 1.25


@functools.cache
def _portrait() -> tuple[Image, FloatImage]:
    """Returns the cropped astronaut photo and its soft cut-out mask (source pixels)."""
    from skimage import data

    # scikit-image ships no type hints for skimage.data.
    photo = np.ascontiguousarray(data.astronaut()[:, :, :3], dtype=np.uint8)  # type: ignore[no-untyped-call]
    mask = np.zeros(photo.shape[:2], np.uint8)
    cv2.ellipse(mask, (224, 94), (72, 84), 0, 0, 360, (255,), -1, cv2.LINE_AA)  # head, hair
    cv2.ellipse(mask, (212, 212), (104, 84), 0, 0, 360, (255,), -1, cv2.LINE_AA)  # helmet ring
    shoulders = np.array(
        [(22, 340), (40, 268), (112, 238), (306, 238), (356, 290), (372, 340)], np.int32
    )
    cv2.fillPoly(mask, [shoulders], (255,), cv2.LINE_AA)
    soft = cv2.GaussianBlur(mask, (0, 0), 4).astype(np.float32) / 255.0
    x1, y1, x2, y2 = _CROP
    return photo[y1:y2, x1:x2].copy(), soft[y1:y2, x1:x2].copy()


class FaceScene(Scene):
    """Corridor with doors; a person (real face photo) passes slowly."""

    seed = 22

    def __init__(self, size: tuple[int, int], fps: int, seconds: float) -> None:
        """Draws the corridor and scales the portrait once. See `Scene`."""
        super().__init__(size, fps, seconds)
        self._background = self._draw_corridor()
        photo, mask = _portrait()
        k = _SCALE * self.width / 960
        dsize = (round(photo.shape[1] * k), round(photo.shape[0] * k))
        sprite = np.asarray(cv2.resize(photo, dsize, interpolation=cv2.INTER_AREA), np.float32)
        # Warm the photo's studio lighting slightly towards the corridor's light.
        self._sprite: Image = np.clip(sprite * (0.95, 0.95, 0.9), 0, 255).astype(np.uint8)
        self._alpha: FloatImage = np.asarray(
            cv2.resize(mask, dsize, interpolation=cv2.INTER_LINEAR), np.float32
        )

    def _draw_corridor(self) -> Image:
        w, h = self.width, self.height
        img = vertical_gradient(h, w, (215, 212, 200), (185, 180, 168))
        vp = (self.sx(0.5), self.sy(0.42))
        back = (self.sx(0.40), self.sy(0.30), self.sx(0.60), self.sy(0.58))
        # Floor, ceiling and the end wall of a one-point-perspective corridor.
        fill_poly_gradient(
            img,
            [(0, h), (w, h), (back[2], back[3]), (back[0], back[3])],
            (150, 140, 120),
            (110, 100, 88),
        )
        fill_poly_gradient(
            img,
            [(0, 0), (w, 0), (back[2], back[1]), (back[0], back[1])],
            (235, 235, 230),
            (200, 200, 195),
        )
        cv2.rectangle(img, back[:2], back[2:], (200, 196, 185), -1)
        for corner in ((0, 0), (w, 0), (0, h), (w, h)):
            far = (back[0] if corner[0] == 0 else back[2], back[1] if corner[1] == 0 else back[3])
            cv2.line(img, corner, far, (140, 136, 128), 2, cv2.LINE_AA)
        # Doors on both side walls, nearer ones bigger.
        for side in (-1, 1):
            for depth in (0.25, 0.6):

                def at(d: float, y: float, s: int = side) -> tuple[int, int]:
                    x_edge = 0 if s < 0 else w
                    x_back = back[0] if s < 0 else back[2]
                    return round(x_edge + (x_back - x_edge) * d), round(y + (vp[1] - y) * d)

                d2 = depth + 0.15
                door = np.array(
                    [at(depth, self.sy(0.15)), at(d2, self.sy(0.15)), at(d2, h), at(depth, h)]
                )
                door[2:, 1] = [at(d2, h)[1], at(depth, h)[1]]
                fill_poly_gradient(img, door, (120, 84, 56), (92, 62, 40))
                knob = at(depth + 0.12, self.sy(0.6))
                cv2.circle(img, knob, max(2, self.sx(0.006)), (200, 180, 90), -1, cv2.LINE_AA)
        # Ceiling lights.
        for d in (0.15, 0.45, 0.75):
            y = round(vp[1] * d * 0.7)
            half = round(self.sx(0.12) * (1 - d))
            cv2.rectangle(
                img, (vp[0] - half, y), (vp[0] + half, y + max(2, half // 8)), (252, 252, 245), -1
            )
        return img

    def draw(self, index: int) -> Image:
        """Returns frame ``index``. See `Scene.draw`."""
        img = self._background.copy()
        t = self.t(index)
        sh, _sw = self._sprite.shape[:2]
        # Walk from left of centre to right of centre and back, bobbing with each step.
        u = 0.5 - 0.5 * np.cos(2 * np.pi * t / max(self.seconds, 1e-6))
        x = round(self.sx(0.12 + 0.40 * u))
        y = self.height - sh + round(self.sy(0.04) + self.sy(0.012) * np.sin(t * 2 * np.pi * 0.9))
        blend_into(img, self._sprite, self._alpha, x, y)
        return img
