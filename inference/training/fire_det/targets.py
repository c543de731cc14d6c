"""Training targets per cell (FCOS-style assignment), computed in numpy in the data workers.

A cell is positive for a box when its centre lies inside the box, within
:data:`CENTRE_RADIUS` strides of the box centre, and the box's largest cell-to-side
distance falls in the cell level's :data:`SCALE_RANGES`; among several such boxes the
smallest wins. A box no cell takes (smaller than a stride, or squeezed between ranges) gets
the cell nearest its centre on the level its size belongs to, so every labelled fire teaches
something.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.detectors.fire_smoke_net import STRIDES, cell_centres

F32 = npt.NDArray[np.float32]

#: Largest centre-to-side distance (input pixels) each level answers for.
SCALE_RANGES: tuple[tuple[float, float], ...] = ((0.0, 64.0), (64.0, 128.0), (128.0, 1e8))
CENTRE_RADIUS = 1.5


@dataclass
class Targets:
    """Per-cell targets of one image.

    Attributes:
        cls: ``[A, C]`` 0/1 class targets.
        weight: ``[A, C]`` 1 where the class loss counts, 0 where the class is unknown there.
        box: ``[A, 4]`` assigned box (x1, y1, x2, y2 px); meaningful only at positives.
        centreness: ``[A]`` centre-ness target at positives (0 elsewhere).
        positive: ``[A]`` whether the cell is assigned a box.
    """

    cls: F32
    weight: F32
    box: F32
    centreness: F32
    positive: npt.NDArray[np.bool_]


class Assigner:
    """Assigns boxes to the cells of a fixed ``size × size`` input."""

    def __init__(self, size: int, num_classes: int) -> None:
        self.size = size
        self.num_classes = num_classes
        self.centres = cell_centres(size, size)
        self.strides = np.concatenate(
            [np.full((-(-size // s)) ** 2, s, np.float32) for s in STRIDES]
        )
        self.level = np.concatenate(
            [np.full((-(-size // s)) ** 2, i) for i, s in enumerate(STRIDES)]
        )
        lo = np.asarray([r[0] for r in SCALE_RANGES], np.float32)
        hi = np.asarray([r[1] for r in SCALE_RANGES], np.float32)
        self.lo, self.hi = lo[self.level], hi[self.level]

    def _inside(self, rects: F32) -> npt.NDArray[np.bool_]:
        """``[A, R]`` whether each cell centre lies inside each rectangle."""
        cx, cy = self.centres[:, 0:1], self.centres[:, 1:2]
        return (
            (cx > rects[None, :, 0])
            & (cx < rects[None, :, 2])
            & (cy > rects[None, :, 1])
            & (cy < rects[None, :, 3])
        )

    def __call__(self, boxes: F32, unknown: F32, ignore: F32) -> Targets:
        """Targets of ``boxes`` ``[K, 5]`` with class-unknown and ignore regions ``[U, 5]``."""
        a, c = len(self.centres), self.num_classes
        cls_t = np.zeros((a, c), np.float32)
        weight = np.ones((a, c), np.float32)
        box_t = np.zeros((a, 4), np.float32)
        ctr_t = np.zeros(a, np.float32)
        for rects in (unknown, ignore):
            if len(rects):
                inside = self._inside(rects)
                for r in range(len(rects)):
                    weight[inside[:, r], int(rects[r, 4])] = 0.0
        assigned = np.full(a, -1)
        if len(boxes):
            cx, cy = self.centres[:, 0:1], self.centres[:, 1:2]
            l_, t_ = cx - boxes[None, :, 0], cy - boxes[None, :, 1]
            r_, b_ = boxes[None, :, 2] - cx, boxes[None, :, 3] - cy
            ltrb = np.stack([l_, t_, r_, b_], -1)  # [A, K, 4]
            inside = ltrb.min(-1) > 0
            bcx, bcy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            rad = CENTRE_RADIUS * self.strides[:, None]
            near = (np.abs(cx - bcx[None]) < rad) & (np.abs(cy - bcy[None]) < rad)
            reach = ltrb.max(-1)
            in_range = (reach >= self.lo[:, None]) & (reach <= self.hi[:, None])
            cand = inside & near & in_range
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            cost = np.where(cand, area[None, :], np.inf)
            best = cost.argmin(1)
            has = np.isfinite(cost[np.arange(a), best])
            assigned[has] = best[has]
            for k in range(len(boxes)):
                if (assigned == k).any():
                    continue
                half = max(boxes[k, 2] - boxes[k, 0], boxes[k, 3] - boxes[k, 1]) / 2
                lvl = next(i for i, (lo, hi) in enumerate(SCALE_RANGES) if half <= hi)
                on_level = np.nonzero(self.level == lvl)[0]
                d = (self.centres[on_level, 0] - bcx[k]) ** 2 + (
                    self.centres[on_level, 1] - bcy[k]
                ) ** 2
                cell = on_level[int(d.argmin())]
                if assigned[cell] < 0:
                    assigned[cell] = k
            pos = np.nonzero(assigned >= 0)[0]
            k_of = assigned[pos]
            cls_t[pos, boxes[k_of, 4].astype(int)] = 1.0
            weight[pos, boxes[k_of, 4].astype(int)] = 1.0
            box_t[pos] = boxes[k_of, :4]
            d = np.clip(ltrb[pos, k_of], 1e-3, None)
            lr = np.minimum(d[:, 0], d[:, 2]) / np.maximum(d[:, 0], d[:, 2])
            tb = np.minimum(d[:, 1], d[:, 3]) / np.maximum(d[:, 1], d[:, 3])
            ctr_t[pos] = np.sqrt(lr * tb)
        return Targets(cls_t, weight, box_t, ctr_t, assigned >= 0)
