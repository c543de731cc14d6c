"""ByteTrack-style multi-object tracker, per camera and per class.

Two-stage IoU association (ByteTrack, Zhang et al. 2022): high-score detections are
matched to tracks first, then low-score detections rescue the tracks left over (occluded
or blurred objects keep their id). Unmatched high-score detections start tracks; tracks
unseen for more than ``max_age`` updates are dropped. Boxes are predicted with a smoothed
constant-velocity model instead of a Kalman filter: small, and enough at 5 fps.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from citysight.contracts import FrameBatch, FrameResult
from inference.detectors.common import box_iou

if TYPE_CHECKING:
    from inference.detectors.base import DetectorOutput


F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass
class Track:
    """One tracked object."""

    track_id: int
    class_id: int
    box: F32
    velocity: F32
    score: float
    hits: int = 1
    age: int = 0  # updates since last matched

    def predicted(self) -> F32:
        """Box expected at the next update."""
        pred: F32 = self.box + self.velocity * (self.age + 1)
        return pred

    def update(self, box: F32, score: float) -> None:
        """Take a matched detection."""
        step = (box - self.box) / (self.age + 1)
        self.velocity = 0.6 * self.velocity + 0.4 * step
        self.box = box.astype(np.float32)
        self.score = score
        self.hits += 1
        self.age = 0


def _greedy(iou: F32, threshold: float) -> list[tuple[int, int]]:
    """Greedy matching by descending IoU (rows: tracks, columns: detections)."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    iou = iou.copy()
    while True:
        r, c = np.unravel_index(int(iou.argmax()), iou.shape)
        if iou[r, c] < threshold:
            return pairs
        pairs.append((int(r), int(c)))
        iou[r, :] = -1
        iou[:, c] = -1


class Tracker:
    """Tracks of one camera.

    Args:
        high_threshold: Detections at or above this score are matched first and may
            start tracks.
        low_threshold: Detections below this score are ignored.
        match_iou: Minimum IoU for the first stage.
        low_match_iou: Minimum IoU for the second (low-score) stage.
        max_age: Updates a track survives without a match.
    """

    def __init__(
        self,
        high_threshold: float = 0.5,
        low_threshold: float = 0.1,
        match_iou: float = 0.3,
        low_match_iou: float = 0.5,
        max_age: int = 30,
        ids: itertools.count[int] | None = None,
    ) -> None:
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.match_iou = match_iou
        self.low_match_iou = low_match_iou
        self.max_age = max_age
        self.tracks: list[Track] = []
        self._ids = ids or itertools.count(1)

    def update(self, boxes: npt.ArrayLike, scores: npt.ArrayLike, class_ids: npt.ArrayLike) -> I64:
        """Associate one frame's detections; returns track ids (``-1`` = untracked)."""
        box_arr = np.asarray(boxes, np.float32).reshape(-1, 4)
        score_arr = np.asarray(scores, np.float32).reshape(-1)
        class_arr = np.asarray(class_ids).reshape(-1)
        out = np.full(len(score_arr), -1, np.int64)
        matched_tracks: set[int] = set()
        for cls in np.unique(class_arr) if len(class_arr) else []:
            self._update_class(int(cls), box_arr, score_arr, class_arr, out, matched_tracks)
        survivors = []
        for i, t in enumerate(self.tracks):
            if i not in matched_tracks:
                t.age += 1
            if t.age <= self.max_age:
                survivors.append(t)
        self.tracks = survivors
        return out

    def _update_class(
        self,
        cls: int,
        boxes: F32,
        scores: F32,
        class_ids: npt.NDArray[Any],
        out: I64,
        matched: set[int],
    ) -> None:
        t_idx = [i for i, t in enumerate(self.tracks) if t.class_id == cls]
        high = np.flatnonzero((class_ids == cls) & (scores >= self.high_threshold))
        low = np.flatnonzero(
            (class_ids == cls) & (scores >= self.low_threshold) & (scores < self.high_threshold)
        )
        free = list(t_idx)
        for det_idx, thr in ((high, self.match_iou), (low, self.low_match_iou)):
            if len(det_idx) == 0 or not free:
                continue
            pred = np.stack([self.tracks[i].predicted() for i in free])
            pairs = _greedy(box_iou(pred, boxes[det_idx]), thr)
            for r, c in pairs:
                ti, di = free[r], int(det_idx[c])
                self.tracks[ti].update(boxes[di], float(scores[di]))
                out[di] = self.tracks[ti].track_id
                matched.add(ti)
            taken = {free[r] for r, _ in pairs}
            free = [i for i in free if i not in taken]
        for di in high:
            if out[di] == -1:
                t = Track(
                    next(self._ids),
                    cls,
                    boxes[di].copy(),
                    np.zeros(4, np.float32),
                    float(scores[di]),
                )
                self.tracks.append(t)
                matched.add(len(self.tracks) - 1)
                out[di] = t.track_id


class TrackerBank:
    """One :class:`Tracker` per camera, created on first use (kwargs go to each tracker)."""

    def __init__(self, **tracker_kwargs: float) -> None:
        self._kwargs = tracker_kwargs
        self._trackers: dict[str, Tracker] = {}

    def assign(
        self, camera_id: str, boxes: npt.ArrayLike, scores: npt.ArrayLike, class_ids: npt.ArrayLike
    ) -> I64:
        """Track ids for one frame of ``camera_id``."""
        tr = self._trackers.get(camera_id)
        if tr is None:
            tr = self._trackers[camera_id] = Tracker(**self._kwargs)  # type: ignore[arg-type]
        return tr.update(boxes, scores, class_ids)

    def frame_result(self, batch: FrameBatch, i: int, out: DetectorOutput) -> FrameResult:
        """The tracked :class:`FrameResult` of frame ``i`` of ``batch`` (every backend's output)."""
        h, w = batch.frames[i].shape[:2]
        cam = batch.camera_ids[i]
        track_ids = self.assign(cam, out.boxes, out.scores, out.class_ids)
        return FrameResult(
            camera_id=cam,
            frame_time=float(batch.frame_times[i]),
            frame_no=int(batch.frame_nos[i]),
            width=w,
            height=h,
            boxes=out.boxes,
            scores=out.scores,
            class_ids=out.class_ids,
            track_ids=track_ids if len(track_ids) else np.zeros(0, np.int64),
            extra=out.extra,
        )

    def reset(self, camera_id: str | None = None) -> None:
        """Drop one camera's tracks (or all)."""
        if camera_id is None:
            self._trackers.clear()
        else:
            self._trackers.pop(camera_id, None)

    def __len__(self) -> int:
        return len(self._trackers)
