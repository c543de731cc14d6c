"""``fire`` scene: a flickering procedural flame at the foot of a building at night.

The flame is two octaves of rising value noise shaped by a teardrop envelope and
mapped through a black-body-like palette (dark red, orange, yellow, near-white core).
Its base never moves; its shape, height and brightness change every frame, and it
throws a flickering orange glow on the wall behind it.
"""

from __future__ import annotations

import cv2
import numpy as np

from streams.synthetic.drawing import FloatImage, Image, ScrollingNoise, vertical_gradient
from streams.synthetic.scenes.base import Scene

#: Flame base centre, relative to the frame.
FIRE_BASE = (0.42, 0.86)
#: Flame box as a fraction of frame width and height.
_FLAME_SIZE = (0.20, 0.46)

# Palette stops: (level 0..1, RGB).
_STOPS = (
    (0.00, (0, 0, 0)),
    (0.20, (110, 8, 0)),
    (0.42, (225, 60, 0)),
    (0.62, (255, 140, 10)),
    (0.80, (255, 210, 60)),
    (1.00, (255, 250, 215)),
)


def _palette() -> Image:
    levels = np.linspace(0.0, 1.0, 256)
    xs = [s[0] for s in _STOPS]
    lut = np.stack([np.interp(levels, xs, [s[1][c] for s in _STOPS]) for c in range(3)], axis=1)
    return lut.round().astype(np.uint8)


class FireScene(Scene):
    """Night street front with a fire burning against the building."""

    seed = 33

    def __init__(self, size: tuple[int, int], fps: int, seconds: float) -> None:
        """Draws the night background and prepares the noise fields. See `Scene`."""
        super().__init__(size, fps, seconds)
        self._background = self._draw_night()
        self._fw = max(8, self.sx(_FLAME_SIZE[0]))
        self._fh = max(8, self.sy(_FLAME_SIZE[1]))
        # Simulate at half resolution and upscale: flames are soft anyway.
        sw, sh = max(4, self._fw // 2), max(4, self._fh // 2)
        speed = sh / 12 * 10 / fps  # rising about 0.8 flame heights per second
        n = self.num_frames
        self._coarse = ScrollingNoise(self.rng, (sw, sh), max(2, sw // 5), (0.0, -speed), n)
        self._fine = ScrollingNoise(self.rng, (sw, sh), max(2, sw // 12), (0.0, -1.7 * speed), n)
        self._flicker = 0.88 + 0.12 * self.rng.random(n)
        ys = np.linspace(0.0, 1.0, sh, dtype=np.float32)[:, None]  # 0 top, 1 base
        xs = np.linspace(-1.0, 1.0, sw, dtype=np.float32)[None, :]
        self._ys, self._xs = ys, xs
        self._lut = _palette()
        # Glow falls off with distance from the base.
        gx = np.arange(self.width, dtype=np.float32)[None, :] - self.sx(FIRE_BASE[0])
        gy = np.arange(self.height, dtype=np.float32)[:, None] - self.sy(FIRE_BASE[1] - 0.12)
        r = max(self.width, 1) * 0.28
        self._glow = np.exp(-(gx**2 + gy**2) / (2 * r * r)).astype(np.float32)

    def _draw_night(self) -> Image:
        w, h = self.width, self.height
        img = vertical_gradient(h, w, (8, 12, 30), (22, 26, 44))
        # Building face with a grid of windows, a few lit.
        cv2.rectangle(
            img, (self.sx(0.08), self.sy(0.12)), (self.sx(0.78), self.sy(0.88)), (38, 36, 42), -1
        )
        cv2.rectangle(img, (self.sx(0.78), self.sy(0.3)), (w, self.sy(0.88)), (30, 30, 36), -1)
        for row in range(5):
            for col in range(8):
                x, y = self.sx(0.12 + col * 0.083), self.sy(0.16 + row * 0.11)
                lit = self.rng.random() < 0.25
                color = (225, 215, 170) if lit else (18, 20, 30)
                cv2.rectangle(img, (x, y), (x + self.sx(0.04), y + self.sy(0.06)), color, -1)
        # Pavement.
        cv2.rectangle(img, (0, self.sy(0.88)), (w, h), (30, 30, 32), -1)
        cv2.line(img, (0, self.sy(0.88)), (w, self.sy(0.88)), (55, 55, 58), 2)
        # Street lamp on the right.
        cv2.line(img, (self.sx(0.9), self.sy(0.88)), (self.sx(0.9), self.sy(0.35)), (60, 60, 66), 4)
        cv2.circle(
            img,
            (self.sx(0.9), self.sy(0.34)),
            max(3, self.sx(0.012)),
            (255, 230, 170),
            -1,
            cv2.LINE_AA,
        )
        return img

    def _flame(self, index: int) -> FloatImage:
        """Returns the flame intensity (0..1) at simulation resolution."""
        t = self.t(index)
        ys, xs = self._ys, self._xs
        # The flame sways more towards its tip.
        sway = 0.12 * np.sin(t * 3.1 + ys * 5.0) * (1.0 - ys) + 0.05 * np.sin(t * 7.3)
        width = 0.22 + 0.42 * ys**1.5
        envelope = np.exp(-((xs - sway) ** 2) / (2.0 * width**2)) * ys**0.8
        noise = 0.62 * self._coarse.window(index) + 0.38 * self._fine.window(index)
        f = envelope * (0.35 + 1.25 * noise) * self._flicker[index]
        return np.asarray(np.clip((f - 0.25) * 1.9, 0.0, 1.0), dtype=np.float32)

    def draw(self, index: int) -> Image:
        """Returns frame ``index``. See `Scene.draw`."""
        flicker = float(self._flicker[index])
        # Orange glow on everything near the fire.
        glow = self._glow * (38.0 * flicker)
        img = np.clip(
            self._background + glow[..., None] * np.array([1.0, 0.45, 0.1], np.float32), 0, 255
        ).astype(np.uint8)
        f = cv2.resize(self._flame(index), (self._fw, self._fh), interpolation=cv2.INTER_LINEAR)
        color = self._lut[(f * 255).astype(np.uint8)]
        alpha = np.clip(f * 2.5, 0.0, 1.0)[..., None]
        x0 = self.sx(FIRE_BASE[0]) - self._fw // 2
        y0 = self.sy(FIRE_BASE[1]) - self._fh
        x1, y1 = max(x0, 0), max(y0, 0)
        x2, y2 = min(x0 + self._fw, self.width), min(y0 + self._fh, self.height)
        roi = img[y1:y2, x1:x2].astype(np.float32)
        c = color[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0].astype(np.float32)
        a = alpha[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]
        img[y1:y2, x1:x2] = (roi + (c - roi) * a).astype(np.uint8)
        return np.asarray(img, dtype=np.uint8)
