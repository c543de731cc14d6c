"""Augmentations for city cameras: scale, placement, mosaic, blur, JPEG, night/IR, haze.

A :class:`Canvas` is one training input: a square BGR image, its boxes in canvas pixels and
the regions where a class is unknown (a ``fire_cctv`` image pasted into a mosaic leaves smoke
unknown inside its own rectangle only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

#: A box keeps its label when at least this share of its area stays inside the canvas.
MIN_VISIBLE = 0.4
#: Boxes narrower or lower than this (canvas pixels) are dropped (nothing left to see).
MIN_SIDE = 3.0


@dataclass
class Canvas:
    """One training input.

    Attributes:
        img: ``[S, S, 3]`` BGR ``uint8``.
        boxes: ``[K, 5]`` ``x1, y1, x2, y2`` (canvas pixels) and class index.
        unknown: ``[U, 5]`` rectangles and the class index unknown inside them.
        ignore: ``[I, 5]`` rectangles (and class) of boxes cut by the canvas edge below
            :data:`MIN_VISIBLE`: neither positive nor negative there.
    """

    img: U8
    boxes: F32 = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    unknown: F32 = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    ignore: F32 = field(default_factory=lambda: np.zeros((0, 5), np.float32))


def place(
    canvas: U8,
    img: U8,
    boxes_norm: F32,
    known: tuple[bool, ...],
    rect: tuple[float, float, float, float],
    rng: np.random.Generator,
    scale: float,
    aspect: float = 1.0,
) -> tuple[F32, F32, F32]:
    """Paste ``img`` scaled by ``scale`` (× ``aspect`` horizontally) into ``canvas`` inside
    the rectangle ``rect`` (x1, y1, x2, y2) at a random offset; the part outside ``rect`` is
    cropped away.

    Returns:
        Boxes ``[K, 5]`` (canvas pixels), unknown regions and ignore regions.
    """
    h, w = img.shape[:2]
    nw, nh = max(1, round(w * scale * aspect)), max(1, round(h * scale))
    rx1, ry1, rx2, ry2 = (round(v) for v in rect)
    rw, rh = rx2 - rx1, ry2 - ry1
    # Offset of the pasted image's top-left relative to rect (may be negative: a crop).
    ox = int(rng.integers(min(0, rw - nw), max(0, rw - nw) + 1))
    oy = int(rng.integers(min(0, rh - nh), max(0, rh - nh) + 1))
    resized = cv2.resize(
        img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    sx1, sy1 = max(0, -ox), max(0, -oy)
    sx2, sy2 = min(nw, rw - ox), min(nh, rh - oy)
    canvas[ry1 + oy + sy1 : ry1 + oy + sy2, rx1 + ox + sx1 : rx1 + ox + sx2] = resized[
        sy1:sy2, sx1:sx2
    ]
    x0, y0 = rx1 + ox, ry1 + oy
    b = boxes_norm.copy()
    b[:, [0, 2]] = b[:, [0, 2]] * nw + x0
    b[:, [1, 3]] = b[:, [1, 3]] * nh + y0
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    clipped = b.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(max(rx1, x0), min(rx2, x0 + nw))
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(max(ry1, y0), min(ry2, y0 + nh))
    cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    vis = (cw * ch) / np.maximum(area, 1e-6)
    ok = (vis >= MIN_VISIBLE) & (cw >= MIN_SIDE) & (ch >= MIN_SIDE)
    part_visible = (cw > 0) & (ch > 0) & ~ok
    pasted = [max(rx1, x0), max(ry1, y0), min(rx2, x0 + nw), min(ry2, y0 + nh)]
    unknown = np.asarray([[*pasted, c] for c, k in enumerate(known) if not k], np.float32).reshape(
        -1, 5
    )
    return clipped[ok], unknown, clipped[part_visible]


def hflip(c: Canvas) -> Canvas:
    """Mirror the canvas and everything on it."""
    s = c.img.shape[1]

    def flip(b: F32) -> F32:
        b = b.copy()
        b[:, [0, 2]] = s - b[:, [2, 0]]
        return b

    return Canvas(
        np.ascontiguousarray(c.img[:, ::-1]), flip(c.boxes), flip(c.unknown), flip(c.ignore)
    )


def _jpeg(img: U8, quality: int) -> U8:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), np.uint8) if ok else img


def photometric(img: U8, rng: np.random.Generator) -> U8:
    """Colour, night/IR, haze, blur, low resolution, noise and JPEG, each at random.

    Hue moves by a few OpenCV units only: a large hue shift turns flame colours into
    non-flame ones and would teach the wrong thing.
    """
    out: Any = img  # OpenCV's stubs type every result as MatLike; uint8 throughout
    if rng.random() < 0.8:
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-4, 4)) % 180
        hsv[..., 1] *= rng.uniform(0.55, 1.35)
        hsv[..., 2] *= rng.uniform(0.6, 1.3)
        out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
    if rng.random() < 0.4:
        f = out.astype(np.float32)
        f = (f - 128) * rng.uniform(0.7, 1.3) + 128 + rng.uniform(-25, 25)
        out = np.clip(f, 0, 255).astype(np.uint8)
    r = rng.random()
    if r < 0.12:  # night / IR camera: greyscale, often with boosted contrast
        g = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        if rng.random() < 0.5:
            g = cv2.equalizeHist(g)
        out = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
    elif r < 0.22:  # dusk / night colour: dark, bluish; bright things stay bright
        f = out.astype(np.float32) / 255.0
        f = 255.0 * f ** rng.uniform(1.4, 2.4) * np.array([1.1, 1.0, 0.92], np.float32)
        out = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.15:  # haze: I = J·t + A·(1 − t), denser towards the top
        size = out.shape[0]
        a = rng.uniform(170, 235)
        t = np.linspace(rng.uniform(0.45, 0.8), rng.uniform(0.75, 1.0), size, dtype=np.float32)
        out = np.clip(out * t[:, None, None] + a * (1 - t[:, None, None]), 0, 255).astype(np.uint8)
    r = rng.random()
    if r < 0.12:
        k = int(rng.choice([3, 5, 7]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    elif r < 0.2:  # motion blur (camera shake, moving PTZ)
        k = int(rng.integers(5, 11))
        line = np.zeros((k, k), np.float32)
        line[k // 2] = 1.0 / k
        m = cv2.getRotationMatrix2D((k / 2, k / 2), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(line, m, (k, k))
        out = cv2.filter2D(out, -1, kernel / max(float(kernel.sum()), 1e-6))
    if rng.random() < 0.15:  # a low-resolution camera upscaled
        size = out.shape[0]
        s = rng.uniform(0.3, 0.7)
        small = cv2.resize(out, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.2:  # sensor noise (cv2.randn: numpy's normal is slow at this size)
        noise = np.zeros(out.shape, np.int16)
        cv2.setRNGSeed(int(rng.integers(1 << 30)))
        cv2.randn(noise, np.zeros(1), np.full(1, rng.uniform(3, 10)))
        out = np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.35:
        out = _jpeg(out, int(rng.integers(15, 75)))
    return np.ascontiguousarray(out)
