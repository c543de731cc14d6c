"""Small real inference functions for tests and load runs (no model files needed)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from citysight.contracts import FrameBatch, FrameResult, ObjectClass

InferFn = Callable[[FrameBatch], list[FrameResult]]


def empty_infer(batch: FrameBatch) -> list[FrameResult]:
    """One empty :class:`FrameResult` per frame (decode and publish path only)."""
    return [
        FrameResult(camera_id=c, frame_time=t, frame_no=n, width=f.shape[1], height=f.shape[0])
        for f, c, n, t in zip(
            batch.frames, batch.camera_ids, batch.frame_nos, batch.frame_times, strict=True
        )
    ]


def red_blob_infer(batch: FrameBatch, min_area_px: int = 16) -> list[FrameResult]:
    """Report the bounding box of strongly red pixels as a ``FIRE`` detection.

    A colour threshold, not a detector: it makes the worker's publish and snapshot path
    testable with clips that draw a red square.
    """
    out: list[FrameResult] = []
    for f, cam, no, t in zip(
        batch.frames, batch.camera_ids, batch.frame_nos, batch.frame_times, strict=True
    ):
        b, g, r = cv2.split(f)
        mask = (r > 170) & (g < 90) & (b < 90)
        ys, xs = np.nonzero(mask)
        h, w = f.shape[:2]
        if len(xs) >= min_area_px:
            box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
            out.append(
                FrameResult(
                    camera_id=cam,
                    frame_time=t,
                    frame_no=no,
                    width=w,
                    height=h,
                    boxes=box,
                    scores=np.array([min(1.0, len(xs) / 400.0)], np.float32),
                    class_ids=np.array([int(ObjectClass.FIRE)], np.int32),
                )
            )
        else:
            out.append(FrameResult(camera_id=cam, frame_time=t, frame_no=no, width=w, height=h))
    return out


def red_blob_infer_factory() -> InferFn:
    """Factory form of :func:`red_blob_infer` (what ``StreamWorker`` takes)."""
    return red_blob_infer


def empty_infer_factory() -> InferFn:
    """Factory form of :func:`empty_infer`."""
    return empty_infer
