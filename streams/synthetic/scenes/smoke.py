"""``smoke`` scene: a grey smoke plume rising from a roof in front of concrete towers.

The plume leaves a vent on a flat roof, rises slowly, widens with height, bends with
the wind and grows longer over the first quarter of the clip. Density is drifting value
noise under a plume-shaped envelope; colour is low-saturation grey, semi-transparent, so
the window grid of the towers behind shows through it, softened (the cue a classical
smoke detector looks for: a hazy region that blurs the texture behind it).
"""

from __future__ import annotations

import cv2
import numpy as np

from streams.synthetic.drawing import FloatImage, Image, ScrollingNoise, vertical_gradient
from streams.synthetic.scenes.base import Scene

#: Smoke source (the roof vent), relative to the frame.
SMOKE_SOURCE = (0.36, 0.46)
# Box (relative x1, y1, x2, y2) that the plume may cover.
_BOX = (0.14, 0.0, 0.98, 0.50)


class SmokeScene(Scene):
    """Daytime rooftops with a growing, drifting smoke plume."""

    seed = 44

    def __init__(self, size: tuple[int, int], fps: int, seconds: float) -> None:
        """Draws the daytime background and prepares the noise fields. See `Scene`."""
        super().__init__(size, fps, seconds)
        self._background = self._draw_day()
        x1, y1, x2, y2 = _BOX
        self._box = (self.sx(x1), self.sy(y1), self.sx(x2), self.sy(y2))
        bw, bh = self._box[2] - self._box[0], self._box[3] - self._box[1]
        sw, sh = max(4, bw // 3), max(4, bh // 3)
        n = self.num_frames
        px_per_s = sh / 10  # slow: the texture climbs a box height in 10 s
        v = px_per_s / fps
        self._coarse = ScrollingNoise(self.rng, (sw, sh), max(2, sw // 6), (0.5 * v, -v), n)
        self._fine = ScrollingNoise(self.rng, (sw, sh), max(2, sw // 20), (0.8 * v, -1.4 * v), n)
        # Source position in simulation-grid coordinates, normalised to the grid.
        self._src = (
            (self.sx(SMOKE_SOURCE[0]) - self._box[0]) / bw,
            (self.sy(SMOKE_SOURCE[1]) - self._box[1]) / bh,
        )
        self._ys = np.linspace(0.0, 1.0, sh, dtype=np.float32)[:, None]
        self._xs = np.linspace(0.0, 1.0, sw, dtype=np.float32)[None, :]
        self._aspect = bw / max(bh, 1)

    def _draw_day(self) -> Image:
        w, h = self.width, self.height
        img = vertical_gradient(h, w, (120, 170, 225), (200, 220, 238))
        # Concrete towers behind the roofs, with a dense window grid (texture the smoke
        # drifts across).
        rng = np.random.default_rng(7)
        for x0, x1, top, tone in (
            (0.10, 0.42, 0.04, 168),
            (0.42, 0.70, 0.10, 160),
            (0.70, 0.99, 0.02, 172),
        ):
            cv2.rectangle(img, (self.sx(x0), self.sy(top)), (self.sx(x1), h), (tone,) * 3, -1)
            step_x, step_y = max(4, self.sx(0.022)), max(4, self.sy(0.04))
            for y in range(self.sy(top) + step_y // 2, self.sy(0.55), step_y):
                for x in range(self.sx(x0) + step_x // 3, self.sx(x1) - step_x // 2, step_x):
                    shade = int(rng.integers(55, 95))
                    cv2.rectangle(
                        img,
                        (x, y),
                        (x + step_x // 2, y + step_y // 2),
                        (shade + 6, shade + 3, shade),
                        -1,
                    )
        # Rooftops: the smoking building in front, others behind.
        for roof_x, top, tone in ((0.0, 0.55, 150), (0.55, 0.52, 170), (0.75, 0.40, 140)):
            cv2.rectangle(
                img,
                (self.sx(roof_x), self.sy(top)),
                (self.sx(roof_x + 0.3), h),
                (tone, tone - 6, tone - 14),
                -1,
            )
        cv2.rectangle(img, (self.sx(0.2), self.sy(0.48)), (self.sx(0.62), h), (176, 150, 128), -1)
        cv2.rectangle(
            img, (self.sx(0.2), self.sy(0.48)), (self.sx(0.62), self.sy(0.5)), (120, 104, 92), -1
        )
        for row in range(4):
            for col in range(5):
                x, y = self.sx(0.23 + col * 0.08), self.sy(0.56 + row * 0.11)
                cv2.rectangle(
                    img, (x, y), (x + self.sx(0.04), y + self.sy(0.06)), (80, 100, 125), -1
                )
        # The vent the smoke comes from.
        vx, vy = self.sx(SMOKE_SOURCE[0]), self.sy(SMOKE_SOURCE[1])
        cv2.rectangle(
            img, (vx - self.sx(0.015), vy), (vx + self.sx(0.015), self.sy(0.48)), (90, 86, 84), -1
        )
        return img

    def _density(self, index: int) -> FloatImage:
        """Returns plume opacity (0..1) on the simulation grid."""
        sx, sy = self._src
        # Height above the source, normalised so the box top is 1.
        rise = np.clip((sy - self._ys) / max(sy, 1e-6), 0.0, None)
        # The plume grows to full length over the first half of the clip.
        length = 0.3 + 0.7 * min(1.0, self.progress(index) * 4.0)
        wind = 0.5 * rise**1.4
        center = sx + wind / self._aspect * 1.8
        width = (0.07 + 0.40 * rise) / self._aspect * 1.6
        across = np.exp(-((self._xs - center) ** 2) / (2.0 * width**2))
        along = np.clip((length - rise) / 0.2, 0.0, 1.0) * (self._ys <= sy)
        noise = 0.6 * self._coarse.window(index) + 0.4 * self._fine.window(index)
        d = across * along * (0.45 + 1.0 * noise) * (1.0 - 0.4 * rise)
        return np.asarray(np.clip((d - 0.1) * 1.1, 0.0, 0.6), dtype=np.float32)

    def draw(self, index: int) -> Image:
        """Returns frame ``index``. See `Scene.draw`."""
        img = self._background.copy()
        x1, y1, x2, y2 = self._box
        d = cv2.resize(self._density(index), (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
        # Semi-transparent dark-grey smoke (as from a burning roof): opacity saturates at
        # 0.6 so the towers show through, softened; almost no saturation.
        a = np.clip(d * 1.5, 0.0, 0.6)[..., None]
        shade = (128.0 - 25.0 * d)[..., None] * np.array([1.0, 0.99, 0.97], np.float32)
        roi = img[y1:y2, x1:x2].astype(np.float32)
        img[y1:y2, x1:x2] = (roi + (shade - roi) * a).astype(np.uint8)
        return img
