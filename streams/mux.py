"""Cross-camera frame batching with nvstreammux semantics.

Each camera has a bounded queue; a full queue drops its oldest frame (counted), so a
decoder never blocks and latency cannot build up when inference is slower than the
cameras. :meth:`FrameMux.next_batch` returns as soon as ``max_batch`` frames are ready, or
when ``push_timeout_ms`` has passed since the first frame of the batch arrived; cameras are
served round-robin so a fast camera cannot starve the others.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from citysight.contracts import FrameBatch


@dataclass(slots=True)
class _Queue:
    detectors: frozenset[str]
    options: Mapping[str, str] = field(default_factory=dict)
    items: deque[tuple[int, float, npt.NDArray[np.uint8], float]] = field(default_factory=deque)
    pushed: int = 0
    drops: int = 0


class FrameMux:
    """Bounded per-camera queues batched round-robin.

    Args:
        queue_frames: Frames kept per camera; a push into a full queue drops the oldest.
    """

    def __init__(self, queue_frames: int = 2) -> None:
        if queue_frames < 1:
            raise ValueError("queue_frames must be >= 1")
        self.queue_frames = queue_frames
        self._queues: dict[str, _Queue] = {}
        self._order: list[str] = []
        self._rr = 0
        self._cond = threading.Condition()
        self._ready = 0
        self._closed = False

    def add_camera(
        self,
        camera_id: str,
        detectors: frozenset[str] = frozenset(),
        options: Mapping[str, str] | None = None,
    ) -> None:
        """Register a camera (idempotent; updates its detectors and their settings).

        Args:
            camera_id: The camera.
            detectors: Detectors its frames go to.
            options: Per-detector settings sent with its frames (``FrameBatch.options``).
        """
        with self._cond:
            q = self._queues.get(camera_id)
            opts = dict(options or {})
            if q is None:
                self._queues[camera_id] = _Queue(detectors=detectors, options=opts)
                self._order.append(camera_id)
            else:
                q.detectors = detectors
                q.options = opts

    def remove_camera(self, camera_id: str) -> None:
        """Forget a camera and its queued frames."""
        with self._cond:
            q = self._queues.pop(camera_id, None)
            if q is not None:
                self._ready -= len(q.items)
                self._order.remove(camera_id)

    def push(
        self, camera_id: str, frame_no: int, frame_time: float, frame: npt.NDArray[np.uint8]
    ) -> bool:
        """Queue a frame without ever blocking.

        Returns:
            False when the push dropped an older frame (or the camera is unknown).
        """
        with self._cond:
            q = self._queues.get(camera_id)
            if q is None or self._closed:
                return False
            q.pushed += 1
            kept = True
            if len(q.items) >= self.queue_frames:
                q.items.popleft()
                q.drops += 1
                kept = False
            else:
                self._ready += 1
            q.items.append((frame_no, frame_time, frame, time.monotonic()))
            self._cond.notify()
            return kept

    def drops(self, camera_id: str) -> int:
        """Frames of a camera dropped because its queue was full."""
        q = self._queues.get(camera_id)
        return q.drops if q is not None else 0

    def pending(self) -> int:
        """Frames waiting in all queues."""
        return self._ready

    def stats(self) -> dict[str, dict[str, int]]:
        """Per-camera ``pushed``, ``drops`` and ``queued`` counts."""
        with self._cond:
            return {
                cid: {"pushed": q.pushed, "drops": q.drops, "queued": len(q.items)}
                for cid, q in self._queues.items()
            }

    def close(self) -> None:
        """Wake any waiter; later pushes are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def next_batch(
        self, max_batch: int, push_timeout_ms: float, idle_timeout_s: float = 0.5
    ) -> FrameBatch | None:
        """Wait for a batch.

        Args:
            max_batch: Most frames in a batch.
            push_timeout_ms: Once a first frame is ready, wait at most this long for the
                batch to fill.
            idle_timeout_s: Return ``None`` if no frame arrives within this time.

        Returns:
            A :class:`FrameBatch`, or ``None`` when idle or closed.
        """
        deadline_idle = time.monotonic() + idle_timeout_s
        with self._cond:
            while self._ready == 0 and not self._closed:
                left = deadline_idle - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if self._closed:
                return None
            first = min(
                (q.items[0][3] for q in self._queues.values() if q.items), default=time.monotonic()
            )
            deadline = first + push_timeout_ms / 1000.0
            while self._ready < max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._take(max_batch)

    def _take(self, max_batch: int) -> FrameBatch | None:
        frames: list[npt.NDArray[np.uint8]] = []
        cams: list[str] = []
        nos: list[int] = []
        times: list[float] = []
        dets: list[frozenset[str]] = []
        opts: list[Mapping[str, str]] = []
        n_cams = len(self._order)
        while len(frames) < max_batch and self._ready > 0 and n_cams:
            took = False
            for k in range(n_cams):
                if len(frames) >= max_batch:
                    break
                cid = self._order[(self._rr + k) % n_cams]
                q = self._queues[cid]
                if not q.items:
                    continue
                no, t, f, _ = q.items.popleft()
                self._ready -= 1
                frames.append(f)
                cams.append(cid)
                nos.append(no)
                times.append(t)
                dets.append(q.detectors)
                opts.append(q.options)
                took = True
                last = k
            if not took:
                break
            # The next batch starts after the last camera served (round-robin fairness).
            self._rr = (self._rr + last + 1) % n_cams
        if not frames:
            return None
        return FrameBatch(
            frames=frames,
            camera_ids=cams,
            frame_nos=nos,
            frame_times=times,
            detectors=dets,
            # Only when a camera has settings: a batch without any stays as it always was.
            options=opts if any(opts) else [],
        )
