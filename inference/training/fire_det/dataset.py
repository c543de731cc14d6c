"""The epoch's samples: real images (single or mosaic), smoke composites, hard negatives.

Every sample is a deterministic function of ``(seed, epoch, index)``, so a run resumed from a
checkpoint sees exactly the samples an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from inference.detectors.common import read_image
from inference.training.fire_det.augment import Canvas, hflip, photometric, place
from inference.training.fire_det.data import Item
from inference.training.fire_det.synth import Backgrounds, composite_smoke, hard_negative
from inference.training.fire_det.targets import Assigner

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Mix:
    """What one epoch holds besides each real training image once.

    Attributes:
        smoke_repeat: Extra passes over real images with smoke (they are few).
        smoke_composites: Synthetic smoke samples per epoch.
        hard_negatives: Generated hard negatives per epoch.
        backgrounds: Plain background frames (street clips, demo scenes) per epoch.
        clip_cap: At most this many frames of one clip per epoch (a different random subset
            each epoch): long clips hold hundreds of near-identical frames, and a cap spends
            the epoch on variety instead.
        mosaic: Probability that a real sample is a 2×2 mosaic.
        zoom_out: Probability that a single real image is pasted small onto a background.
    """

    smoke_repeat: int = 2
    smoke_composites: int = 400
    hard_negatives: int = 300
    backgrounds: int = 150
    clip_cap: int = 60
    mosaic: float = 0.3
    zoom_out: float = 0.25


class FireSmokeSamples(torch.utils.data.Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """One epoch of training canvases with their per-cell targets.

    Args:
        items: Training images.
        backgrounds: Background bank.
        plumes: Smoke opacity maps.
        size: Canvas side.
        seed: Run seed.
        mix: Epoch composition.
    """

    def __init__(
        self,
        items: list[Item],
        backgrounds: Backgrounds,
        plumes: list[F32],
        size: int,
        seed: int,
        mix: Mix | None = None,
    ) -> None:
        self.items = items
        self.bank = backgrounds
        self.plumes = plumes
        self.size = size
        self.seed = seed
        self.mix = mix or Mix()
        self.assigner = Assigner(size, 2)
        self.epoch = 0
        self.plan: list[tuple[str, int]] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Build epoch ``epoch``'s sample list (shuffled with ``(seed, epoch)``)."""
        self.epoch = epoch
        m = self.mix
        rng = np.random.default_rng([self.seed, epoch, 7])
        by_clip: dict[str, list[int]] = {}
        for i, it in enumerate(self.items):
            by_clip.setdefault(it.clip, []).append(i)
        plan = []
        for clip in sorted(by_clip):
            idx = by_clip[clip]
            if len(idx) > m.clip_cap:
                idx = sorted(int(i) for i in rng.choice(idx, m.clip_cap, replace=False))
            plan += [("real", i) for i in idx]
        smoky = [i for i, it in enumerate(self.items) if it.has(1)]
        plan += [("real", i) for _ in range(m.smoke_repeat) for i in smoky]
        plan += [("smoke", i) for i in range(m.smoke_composites if self.plumes else 0)]
        plan += [("hard", i) for i in range(m.hard_negatives)]
        plan += [("background", i) for i in range(m.backgrounds)]
        order = rng.permutation(len(plan))
        self.plan = [plan[int(i)] for i in order]

    def __len__(self) -> int:
        return len(self.plan)

    def _real(self, idx: int) -> tuple[npt.NDArray[np.uint8], Item]:
        it = self.items[idx]
        return read_image(it.path), it

    def _single(self, idx: int, rng: np.random.Generator) -> Canvas:
        s = self.size
        img, it = self._real(idx)
        h, w = img.shape[:2]
        if rng.random() < self.mix.zoom_out:
            canvas = self.bank.canvas(rng, s)
            scale = s * rng.uniform(0.25, 0.75) / max(h, w)
        else:
            canvas = np.zeros((s, s, 3), np.uint8)
            scale = s * rng.uniform(0.55, 1.35) / max(h, w)
        boxes, unknown, ignore = place(
            canvas, img, it.boxes, it.known, (0, 0, s, s), rng, scale, rng.uniform(0.8, 1.25)
        )
        return Canvas(canvas, boxes, unknown, ignore)

    def _mosaic(self, idx: int, rng: np.random.Generator) -> Canvas:
        s = self.size
        canvas = np.zeros((s, s, 3), np.uint8)
        cx, cy = int(s * rng.uniform(0.3, 0.7)), int(s * rng.uniform(0.3, 0.7))
        rects = [(0, 0, cx, cy), (cx, 0, s, cy), (0, cy, cx, s), (cx, cy, s, s)]
        first = int(rng.integers(4))
        parts_b, parts_u, parts_i = [], [], []
        for q, rect in enumerate(rects):
            rw, rh = rect[2] - rect[0], rect[3] - rect[1]
            if q == first or rng.random() < 0.75:
                img, it = self._real(idx if q == first else int(rng.integers(len(self.items))))
                boxes_norm, known = it.boxes, it.known
            else:
                img = self.bank.canvas(rng, max(rw, rh))
                boxes_norm, known = np.zeros((0, 5), np.float32), (True, True)
            h, w = img.shape[:2]
            scale = max(rw / w, rh / h) * rng.uniform(0.7, 1.3)
            b, u, ig = place(
                canvas, img, boxes_norm, known, rect, rng, scale, rng.uniform(0.85, 1.2)
            )
            parts_b.append(b)
            parts_u.append(u)
            parts_i.append(ig)
        return Canvas(
            canvas, np.concatenate(parts_b), np.concatenate(parts_u), np.concatenate(parts_i)
        )

    def canvas(self, i: int) -> Canvas:
        """Sample ``i`` of the current epoch, augmented (no targets)."""
        kind, idx = self.plan[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        s = self.size
        if kind == "real":
            c = self._mosaic(idx, rng) if rng.random() < self.mix.mosaic else self._single(idx, rng)
        elif kind == "smoke":
            img, boxes = composite_smoke(self.bank.canvas(rng, s), self.plumes, rng)
            c = Canvas(img, np.concatenate([boxes, np.ones((len(boxes), 1), np.float32)], 1))
        elif kind == "hard":
            img, _ = hard_negative(self.bank.canvas(rng, s), rng)
            c = Canvas(img)
        else:
            c = Canvas(self.bank.canvas(rng, s))
        if rng.random() < 0.5:
            c = hflip(c)
        c.img = photometric(c.img, rng)
        return c

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.canvas(i)
        t = self.assigner(c.boxes, c.unknown, c.ignore)
        # uint8 here (4× less to pass between processes); the training loop makes it float.
        x = torch.from_numpy(np.ascontiguousarray(c.img.transpose(2, 0, 1)))
        return x, {
            "cls": torch.from_numpy(t.cls),
            "weight": torch.from_numpy(t.weight),
            "box": torch.from_numpy(t.box),
            "centreness": torch.from_numpy(t.centreness),
            "positive": torch.from_numpy(t.positive),
        }
