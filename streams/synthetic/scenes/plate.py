"""``plate`` scene: two cars seen from behind, driving slowly away, with blue plates.

A lane-level plate camera: the plates are 140-180 px wide at 960 px frame width,
upright and sharp, so a real plate detector plus OCR can read them. The first car
carries ``DEMO_PLATES[0]`` (on the demo hotlist), the second ``DEMO_PLATES[1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from streams.synthetic.drawing import (
    Color,
    Image,
    blend_into,
    fill_poly_gradient,
    vertical_gradient,
)
from streams.synthetic.plates import DEMO_PLATES, plate_image
from streams.synthetic.scenes.base import Scene

# Plate width in pixels at scale 1.0 for a 960 px wide frame.
_PLATE_W = 160


@dataclass(frozen=True)
class _Car:
    plate: str
    body: Color
    # (x, y) of the plate centre, relative, and scale at the clip's start and end.
    start: tuple[float, float, float]
    end: tuple[float, float, float]


_CARS = (
    # Further car (right lane) first: cars are drawn far to near.
    _Car(DEMO_PLATES[1], (150, 28, 36), (0.735, 0.60, 0.93), (0.715, 0.54, 0.90)),
    _Car(DEMO_PLATES[0], (206, 210, 214), (0.265, 0.80, 1.10), (0.300, 0.66, 0.95)),
)


def _shade(color: Color, k: float) -> Color:
    return (
        min(255, round(color[0] * k)),
        min(255, round(color[1] * k)),
        min(255, round(color[2] * k)),
    )


class PlateScene(Scene):
    """Road seen from an overhead plate camera, two cars with readable plates."""

    seed = 11

    def __init__(self, size: tuple[int, int], fps: int, seconds: float) -> None:
        """Draws the empty road once. See `Scene`."""
        super().__init__(size, fps, seconds)
        self._background = self._draw_background()

    def _draw_background(self) -> Image:
        w, h = self.width, self.height
        img = vertical_gradient(h, w, (150, 175, 205), (200, 210, 220))
        # Buildings along the far end of the street.
        x = 0
        while x < w:
            bw = int(self.rng.integers(w // 12, w // 6))
            top = int(self.rng.integers(0, h // 8))
            tone = int(self.rng.integers(120, 190))
            cv2.rectangle(img, (x, top), (x + bw, self.sy(0.3)), (tone, tone - 8, tone - 16), -1)
            for wy in range(top + 10, self.sy(0.28), 22):
                for wx in range(x + 8, x + bw - 14, 20):
                    cv2.rectangle(img, (wx, wy), (wx + 9, wy + 12), (70, 85, 100), -1)
            x += bw + int(self.rng.integers(0, 6))
        # Asphalt with a little static grain, lighter towards the horizon.
        vp = (self.sx(0.5), self.sy(0.3))
        road = np.array(
            [
                (self.sx(-0.45), h),
                (self.sx(1.45), h),
                (self.sx(0.75), vp[1]),
                (self.sx(0.25), vp[1]),
            ]
        )
        fill_poly_gradient(img, road, (118, 118, 122), (72, 72, 76))
        grain = (self.rng.normal(0.0, 4.0, (h, w, 1))).astype(np.float32)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [road.astype(np.int32)], (1,))
        img = np.clip(img + grain * mask[..., None], 0, 255).astype(np.uint8)
        # Lane markings converging to the vanishing point: solid edges, dashed centre.
        for rel, dashes in ((0.02, 1), (0.5, 12), (0.98, 1)):
            x_bottom = self.sx(-0.45 + 1.9 * rel)
            for k in range(dashes):
                # Squared spacing fakes perspective foreshortening of the dashes.
                a, b = k / dashes, (k + (0.5 if dashes > 1 else 1.0)) / dashes
                p1 = (round(vp[0] + (x_bottom - vp[0]) * a**2), round(vp[1] + (h - vp[1]) * a**2))
                p2 = (round(vp[0] + (x_bottom - vp[0]) * b**2), round(vp[1] + (h - vp[1]) * b**2))
                thick = max(1, round(10 * b**2 * self.width / 960))
                cv2.line(img, p1, p2, (225, 225, 215), thick, cv2.LINE_AA)
        return img

    def _draw_car(self, img: Image, car: _Car, u: float) -> None:
        sx0, sy0, ss0 = car.start
        sx1, sy1, ss1 = car.end
        cx = (sx0 + (sx1 - sx0) * u) * self.width
        cy = (sy0 + (sy1 - sy0) * u) * self.height
        k = (ss0 + (ss1 - ss0) * u) * self.width / 960

        def p(x: float, y: float) -> tuple[int, int]:
            return round(cx + x * k), round(cy + y * k)

        def pts(*xy: tuple[float, float]) -> npt.NDArray[np.int32]:
            return np.array([p(x, y) for x, y in xy], dtype=np.int32)

        body = car.body
        # Shadow on the road.
        cv2.ellipse(
            img, p(0, 98), (round(270 * k), round(22 * k)), 0, 0, 360, (40, 40, 44), -1, cv2.LINE_AA
        )
        # Tyres.
        for side in (-1, 1):
            cv2.rectangle(img, p(side * 150, 60), p(side * 228, 100), (22, 22, 24), -1)
        # Cabin (roof and C-pillars) and rear window.
        fill_poly_gradient(
            img,
            pts((-212, -105), (212, -105), (168, -262), (-168, -262)),
            _shade(body, 1.1),
            _shade(body, 0.85),
        )
        fill_poly_gradient(
            img,
            pts((-186, -118), (186, -118), (152, -246), (-152, -246)),
            (60, 72, 84),
            (20, 24, 30),
        )
        # Reflection streak across the glass.
        cv2.line(
            img, p(-120, -240), p(-60, -125), (95, 108, 120), max(1, round(10 * k)), cv2.LINE_AA
        )
        # Boot lid and rear body.
        fill_poly_gradient(
            img,
            pts((-232, -110), (232, -110), (238, 30), (-238, 30)),
            _shade(body, 1.08),
            _shade(body, 0.72),
        )
        cv2.line(
            img, p(-225, -62), p(225, -62), _shade(body, 0.6), max(1, round(2 * k)), cv2.LINE_AA
        )
        # Tail lights.
        for side in (-1, 1):
            poly = pts((side * 150, -98), (side * 228, -98), (side * 232, -40), (side * 156, -48))
            fill_poly_gradient(img, poly, (235, 60, 50), (150, 20, 25))
        # Bumper, plate recess and plate.
        fill_poly_gradient(
            img, pts((-240, 24), (240, 24), (236, 78), (-236, 78)), (52, 52, 56), (28, 28, 30)
        )
        plate = plate_image(car.plate, max(8, round(_PLATE_W * k)))
        ph, pw = plate.shape[:2]
        x0, y0 = round(cx - pw / 2), round(cy - ph / 2)
        m = max(2, round(5 * k))
        cv2.rectangle(img, (x0 - m, y0 - m), (x0 + pw + m, y0 + ph + m), (24, 24, 26), -1)
        blend_into(img, plate, np.ones((ph, pw), np.float32), x0, y0)

    def draw(self, index: int) -> Image:
        """Returns frame ``index``. See `Scene.draw`."""
        img = self._background.copy()
        u = self.progress(index)
        for car in _CARS:
            self._draw_car(img, car, u)
        # Slight vertical motion blur (cars move up the frame) and lens softness.
        y1 = max(0, self.sy(min(c.end[1] for c in _CARS)) - round(280 * self.width / 960))
        img[y1:] = cv2.filter2D(img[y1:], -1, np.array([[0.2], [0.6], [0.2]], np.float32))
        return img
