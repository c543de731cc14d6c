"""Small numpy/OpenCV drawing helpers shared by the synthetic scenes.

All images are RGB ``uint8`` arrays of shape ``(height, width, 3)``.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
FloatImage = npt.NDArray[np.float32]
Color = tuple[int, int, int]


def vertical_gradient(height: int, width: int, top: Color, bottom: Color) -> Image:
    """Returns an image that blends linearly from ``top`` to ``bottom``.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        top: RGB colour of the first row.
        bottom: RGB colour of the last row.

    Returns:
        The gradient image.
    """
    ramp = np.linspace(0.0, 1.0, max(height, 1), dtype=np.float32)[:, None, None]
    top_arr = np.asarray(top, dtype=np.float32)[None, None, :]
    bottom_arr = np.asarray(bottom, dtype=np.float32)[None, None, :]
    column = top_arr * (1.0 - ramp) + bottom_arr * ramp
    return np.repeat(column, width, axis=1).round().astype(np.uint8)


def fill_poly_gradient(img: Image, points: npt.ArrayLike, top: Color, bottom: Color) -> None:
    """Fills a polygon in place with a vertical colour gradient (cheap shading).

    Args:
        img: Image to draw on.
        points: Polygon vertices as ``(x, y)`` pixel pairs.
        top: Colour at the polygon's top edge.
        bottom: Colour at the polygon's bottom edge.
    """
    pts = np.asarray(points, dtype=np.int32).reshape(-1, 2)
    h, w = img.shape[:2]
    x1, y1 = max(int(pts[:, 0].min()), 0), max(int(pts[:, 1].min()), 0)
    x2, y2 = min(int(pts[:, 0].max()) + 1, w), min(int(pts[:, 1].max()) + 1, h)
    if x2 <= x1 or y2 <= y1:
        return
    y_top = int(pts[:, 1].min())
    mask = np.zeros((y2 - y1, x2 - x1), dtype=np.uint8)
    cv2.fillPoly(mask, [pts - np.array([x1, y1], dtype=np.int32)], (1,))
    # One gradient column stretched sideways: far cheaper than a full float blend.
    column = vertical_gradient(int(pts[:, 1].max()) + 1 - y_top, 1, top, bottom)
    column = column[y1 - y_top : y2 - y_top]
    grad = cv2.resize(column, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
    np.copyto(img[y1:y2, x1:x2], grad, where=mask[..., None].astype(bool))


def blend_into(img: Image, sprite: Image, alpha: FloatImage, x: int, y: int) -> None:
    """Alpha-blends ``sprite`` into ``img`` with its top-left corner at ``(x, y)``.

    Parts of the sprite outside the image are clipped.

    Args:
        img: Destination image, modified in place.
        sprite: Source RGB image.
        alpha: Per-pixel opacity in ``[0, 1]``, shape ``sprite.shape[:2]``.
        x: Destination column of the sprite's left edge (may be negative).
        y: Destination row of the sprite's top edge (may be negative).
    """
    h, w = img.shape[:2]
    sh, sw = sprite.shape[:2]
    dx1, dy1 = max(x, 0), max(y, 0)
    dx2, dy2 = min(x + sw, w), min(y + sh, h)
    if dx2 <= dx1 or dy2 <= dy1:
        return
    sx1, sy1 = dx1 - x, dy1 - y
    src = sprite[sy1 : sy1 + dy2 - dy1, sx1 : sx1 + dx2 - dx1].astype(np.float32)
    a = alpha[sy1 : sy1 + dy2 - dy1, sx1 : sx1 + dx2 - dx1, None]
    dst = img[dy1:dy2, dx1:dx2].astype(np.float32)
    img[dy1:dy2, dx1:dx2] = (dst + (src - dst) * a).round().astype(np.uint8)


def value_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> FloatImage:
    """Returns smooth random noise in ``[0, 1]`` (random grid, bicubic upsampling).

    Args:
        rng: Random generator (keeps output deterministic).
        height: Output height in pixels.
        width: Output width in pixels.
        cell: Approximate feature size in pixels.

    Returns:
        A float32 array of shape ``(height, width)``.
    """
    gh, gw = height // cell + 3, width // cell + 3
    grid = rng.random((gh, gw), dtype=np.float32)
    big = cv2.resize(grid, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
    out = big[cell : cell + height, cell : cell + width]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


class ScrollingNoise:
    """A window over a large smooth noise field that slides a little every frame.

    Sliding (rather than redrawing) the field keeps texture coherent between frames,
    which is what makes flames rise and smoke drift instead of boiling randomly.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        size: tuple[int, int],
        cell: int,
        velocity: tuple[float, float],
        frames: int,
    ) -> None:
        """Draws the field.

        Args:
            rng: Random generator.
            size: Window ``(width, height)`` in pixels.
            cell: Feature size in pixels.
            velocity: Content motion ``(dx, dy)`` in pixels per frame; negative dy
                moves content up.
            frames: Number of frames the window must slide over without wrapping
                (capped; longer clips wrap around with a visible jump).
        """
        w, h = size
        self._vx, self._vy = velocity
        travel = min(frames, 2000)
        self._extra_x = max(1, int(abs(self._vx) * travel) + 1)
        self._extra_y = max(1, int(abs(self._vy) * travel) + 1)
        self._field = value_noise(rng, h + self._extra_y, w + self._extra_x, cell)
        self._w, self._h = w, h

    def window(self, index: int) -> FloatImage:
        """Returns the ``(height, width)`` noise window of frame ``index``."""
        # Content that moves by +d per frame means the window origin moves by -d;
        # start at the far end of the spare margin so the origin walks across it.
        start_x = self._extra_x - 1 if self._vx > 0 else 0
        start_y = self._extra_y - 1 if self._vy > 0 else 0
        ox = round(start_x - self._vx * index) % self._extra_x
        oy = round(start_y - self._vy * index) % self._extra_y
        return self._field[oy : oy + self._h, ox : ox + self._w]


class SensorNoise:
    """Adds light, fast, deterministic camera sensor noise to frames.

    Fresh Gaussian noise for every 960x540 frame costs more than drawing the scene,
    so a small bank of noise frames is drawn once and cycled with varying offsets.
    """

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], sigma: float = 2.5) -> None:
        """Builds the noise bank.

        Args:
            rng: Random generator.
            size: Frame ``(width, height)``.
            sigma: Noise standard deviation in 8-bit code values.
        """
        w, h = size
        self._bank: list[tuple[Image, Image]] = []
        for _ in range(6):
            n = rng.normal(0.0, sigma, (h, w, 1)).astype(np.float32)
            n = np.repeat(n, 3, axis=2) + rng.normal(0.0, sigma * 0.4, (h, w, 3))
            pos = np.clip(n, 0, 255).round().astype(np.uint8)
            neg = np.clip(-n, 0, 255).round().astype(np.uint8)
            self._bank.append((pos, neg))

    def apply(self, frame: Image, index: int) -> Image:
        """Returns ``frame`` with noise added (saturating).

        Args:
            frame: RGB frame.
            index: Frame number; selects the noise pattern.

        Returns:
            The noisy frame (a new array).
        """
        pos, neg = self._bank[index % len(self._bank)]
        if (index // len(self._bank)) % 2:
            pos, neg = neg, pos
        return np.asarray(cv2.subtract(cv2.add(frame, pos), neg), dtype=np.uint8)
