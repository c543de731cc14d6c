"""``vending`` scene: a street stall sets up on the pavement and stays.

After `VENDING_APPEAR_S` (or 30 % of a shorter clip) a stall appears in the left-centre
of the frame, inside `VENDING_STALL_REGION`: a striped parasol, a table with goods and
a standing vendor. It then never moves. Pedestrians and cars pass by outside the
region (cars on the road above it, pedestrians on the kerb below it and on the right),
so the region's pixels are constant apart from sensor noise once the stall is up.
"""

from __future__ import annotations

import cv2
import numpy as np

from streams.synthetic.drawing import Color, Image, fill_poly_gradient, vertical_gradient
from streams.synthetic.scenes.base import Scene

#: Where the stall stands, relative ``(x1, y1, x2, y2)``; a ``no_vending`` zone around
#: it fires once the stall is up.
VENDING_STALL_REGION: tuple[float, float, float, float] = (0.14, 0.30, 0.46, 0.82)

#: Seconds after the clip's start when the stall appears (clips shorter than 10 s use
#: 30 % of their length).
VENDING_APPEAR_S = 3.0

# Moving objects keep out of the stall region: rows (relative) they may use.
_ROAD_Y = (0.10, 0.27)
_KERB_Y = 0.945


def _person(img: Image, x: int, foot_y: int, height: int, shirt: Color, phase: float) -> None:
    """Draws a simple walking figure with its feet at ``(x, foot_y)``."""
    head = max(2, height // 8)
    body_top = foot_y - height + 2 * head
    hip = foot_y - height * 45 // 100
    stride = round(np.sin(phase) * height * 0.12)
    leg = max(1, height // 12)
    cv2.line(img, (x, hip), (x - stride, foot_y), (40, 40, 60), leg, cv2.LINE_AA)
    cv2.line(img, (x, hip), (x + stride, foot_y), (40, 40, 60), leg, cv2.LINE_AA)
    cv2.rectangle(img, (x - height // 9, body_top), (x + height // 9, hip), shirt, -1)
    cv2.circle(img, (x, body_top - head), head, (200, 160, 130), -1, cv2.LINE_AA)


class VendingScene(Scene):
    """Pavement with passers-by; a stall appears and stays in a fixed place."""

    seed = 55

    def __init__(self, size: tuple[int, int], fps: int, seconds: float) -> None:
        """Draws the street and the stall once. See `Scene`."""
        super().__init__(size, fps, seconds)
        self.appear_s = min(VENDING_APPEAR_S, 0.3 * seconds)
        self._background = self._draw_street()
        self._with_stall = self._background.copy()
        self._draw_stall(self._with_stall)
        self._walkers = [
            # (start x rel, speed rel/s, height rel, shirt colour, row)
            (-0.05, 0.045, 0.11, (60, 110, 180), _KERB_Y),
            (1.05, -0.035, 0.10, (180, 70, 60), _KERB_Y + 0.04),
            (0.40, 0.030, 0.11, (90, 150, 80), _KERB_Y + 0.02),
        ]

    def _draw_street(self) -> Image:
        w, h = self.width, self.height
        img = vertical_gradient(h, w, (176, 168, 158), (150, 144, 136))
        # Shop fronts at the top, road, then the pavement with paving joints.
        cv2.rectangle(img, (0, 0), (w, self.sy(0.08)), (120, 96, 88), -1)
        for i in range(8):
            x = self.sx(i / 8 + 0.02)
            cv2.rectangle(
                img, (x, self.sy(0.01)), (x + self.sx(0.08), self.sy(0.07)), (60, 70, 82), -1
            )
        cv2.rectangle(img, (0, self.sy(0.08)), (w, self.sy(0.29)), (82, 82, 86), -1)
        for i in range(0, 10):
            x = self.sx(i / 10)
            cv2.line(
                img, (x, self.sy(0.185)), (x + self.sx(0.05), self.sy(0.185)), (220, 220, 210), 3
            )
        cv2.rectangle(img, (0, self.sy(0.29)), (w, self.sy(0.31)), (200, 198, 190), -1)
        tile = max(8, self.sx(0.06))
        for y in range(self.sy(0.31), h, tile // 2):
            cv2.line(img, (0, y), (w, y), (128, 122, 116), 1)
        for x in range(0, w, tile):
            cv2.line(img, (x, self.sy(0.31)), (x, h), (128, 122, 116), 1)
        # A tree pit and a bin on the right, for texture.
        cv2.circle(img, (self.sx(0.8), self.sy(0.45)), self.sx(0.05), (92, 70, 50), -1)
        cv2.circle(img, (self.sx(0.8), self.sy(0.45)), self.sx(0.035), (70, 120, 60), -1)
        cv2.rectangle(
            img, (self.sx(0.62), self.sy(0.62)), (self.sx(0.65), self.sy(0.72)), (50, 90, 60), -1
        )
        return img

    def _draw_stall(self, img: Image) -> None:
        x1, y1, x2, y2 = VENDING_STALL_REGION
        cx = self.sx((x1 + x2) / 2)
        top, bottom = self.sy(y1 + 0.03), self.sy(y2 - 0.03)
        half = self.sx((x2 - x1) / 2 - 0.02)
        # Shadow, table with cloth and goods.
        cv2.ellipse(
            img, (cx, bottom - 4), (half, max(2, half // 6)), 0, 0, 360, (110, 106, 100), -1
        )
        t_top = top + (bottom - top) * 55 // 100
        t_bottom = bottom - (bottom - top) // 12
        fill_poly_gradient(
            img,
            [
                (cx - half * 3 // 4, t_top),
                (cx + half * 3 // 4, t_top),
                (cx + half * 3 // 4, t_bottom),
                (cx - half * 3 // 4, t_bottom),
            ],
            (40, 120, 190),
            (20, 70, 120),
        )
        goods = [(230, 180, 40), (220, 60, 40), (240, 140, 30), (110, 180, 60), (250, 230, 200)]
        step = max(4, half // 5)
        for i, x in enumerate(
            range(cx - half * 3 // 4 + step // 2, cx + half * 3 // 4 - step // 3, step)
        ):
            cv2.circle(
                img,
                (x, t_top - step // 3),
                max(2, step // 3),
                goods[i % len(goods)],
                -1,
                cv2.LINE_AA,
            )
        # Vendor standing beside the table's right end, under the parasol's edge.
        canopy_y = top + (bottom - top) // 5
        _person(
            img, cx + half * 17 // 20, t_bottom, (t_bottom - canopy_y) * 9 // 10, (200, 60, 90), 0.0
        )
        # Parasol: pole and a striped canopy.
        cv2.line(img, (cx, canopy_y), (cx, t_top), (60, 60, 60), max(2, half // 40))
        colors = [(230, 40, 40), (245, 245, 235)]
        segments = 8
        for s in range(segments):
            a0, a1 = 180 + s * 180 / segments, 180 + (s + 1) * 180 / segments
            cv2.ellipse(
                img,
                (cx, canopy_y),
                (half, (canopy_y - top)),
                0,
                a0,
                a1,
                colors[s % 2],
                -1,
                cv2.LINE_AA,
            )
        cv2.line(
            img, (cx - half, canopy_y), (cx + half, canopy_y), (150, 30, 30), max(2, half // 30)
        )

    def draw(self, index: int) -> Image:
        """Returns frame ``index``. See `Scene.draw`."""
        t = self.t(index)
        img = (self._with_stall if t >= self.appear_s else self._background).copy()
        # Cars on the road, above the stall region.
        lane_h = self.sy(_ROAD_Y[1] - _ROAD_Y[0]) // 2
        for lane, (speed, color) in enumerate((((0.18, (40, 80, 160))), (-0.12, (200, 200, 60)))):
            x = self.sx((0.1 + speed * t + lane * 0.5) % 1.4 - 0.2)
            y = self.sy(_ROAD_Y[0]) + lane * lane_h + lane_h // 6
            length = self.sx(0.16)
            cv2.rectangle(img, (x, y), (x + length, y + lane_h * 2 // 3), color, -1)
            cv2.rectangle(
                img,
                (x + length // 4, y + 3),
                (x + length * 3 // 4, y + lane_h * 2 // 3 - 3),
                (50, 60, 70),
                -1,
            )
        # Pedestrians below the region, on the right, heights sized to stay out of it.
        for x0, speed, height, shirt, row in self._walkers:
            x = self.sx((x0 + speed * t) % 1.2 - 0.1)
            _person(img, x, self.sy(min(row, 0.995)), self.sy(height), shirt, t * 6.0)
        # Someone walking down the right side of the pavement.
        y = self.sy(0.35 + (0.05 * t) % 0.5)
        _person(img, self.sx(0.72), y, self.sy(0.16), (240, 200, 60), t * 6.0)
        return img
