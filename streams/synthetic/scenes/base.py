"""Base class of a synthetic scene: a deterministic function of the frame number."""

from __future__ import annotations

import abc

import numpy as np

from streams.synthetic.drawing import Image


class Scene(abc.ABC):
    """A procedurally drawn clip.

    Subclasses draw everything that does not change once in ``__init__`` and only the
    moving parts in ``draw``. Sensor noise is added by the writer, not the scene.

    Attributes:
        width: Frame width in pixels.
        height: Frame height in pixels.
        fps: Frames per second.
        seconds: Clip duration in seconds.
        rng: Random generator seeded from the scene's fixed seed.
    """

    #: Fixed per-scene seed, so every render of a scene is identical.
    seed: int = 0

    def __init__(self, size: tuple[int, int], fps: int, seconds: float) -> None:
        """Prepares the static parts of the scene.

        Args:
            size: Frame ``(width, height)`` in pixels.
            fps: Frames per second.
            seconds: Clip duration in seconds.
        """
        self.width, self.height = size
        self.fps = fps
        self.seconds = seconds
        self.rng = np.random.default_rng(self.seed)

    @property
    def num_frames(self) -> int:
        """Number of frames in the clip."""
        return max(1, round(self.seconds * self.fps))

    def t(self, index: int) -> float:
        """Time in seconds of frame ``index``."""
        return index / self.fps

    def progress(self, index: int) -> float:
        """Position of frame ``index`` in the clip, from 0.0 (first) to 1.0 (last)."""
        return index / max(self.num_frames - 1, 1)

    def sx(self, rel: float) -> int:
        """Converts a relative x coordinate (0..1) to pixels."""
        return round(rel * self.width)

    def sy(self, rel: float) -> int:
        """Converts a relative y coordinate (0..1) to pixels."""
        return round(rel * self.height)

    @abc.abstractmethod
    def draw(self, index: int) -> Image:
        """Returns frame ``index`` as a new RGB ``uint8`` array (without noise)."""
