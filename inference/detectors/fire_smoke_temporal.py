"""Temporal confirmation of per-frame fire/smoke boxes on video, per camera.

The trained network (:mod:`inference.detectors.fire_smoke_net`) scores each frame alone, and a
static warm or bright strip (a wooden floor between dark trouser legs, a white pole on a
mountain-top camera) can score as fire frame after frame: persistence alone does not reject
it. Real fire flickers and real smoke drifts, so on video a box is kept only when

* **persistence**: a box of the same class overlapping it (IoU ≥ :attr:`TemporalConfig.iou`)
  was found in at least ``persist`` of the camera's last ``window`` frames (all of them
  while the camera has fewer frames than ``persist``), and
* **activity**: the picture inside the box changes more than the picture as a whole. Fire:
  the mean absolute grey difference between consecutive frames inside the box, minus the
  frame's median one (so camera noise, compression and global light changes cancel), is at
  least ``fire_flicker`` grey levels. Smoke: the same between the oldest and the newest
  frame of the window (smoke drifts slowly; a frame-to-frame difference is too small) is at
  least ``smoke_drift``.

**Faint smoke on video** (a thin veil far away, which the network was hardly trained on:
the model card lists it as a failure case) comes from a second, classical cue: the
``classical`` tier's video smoke rule (a greyish, semi-transparent foreground that blurs the
texture behind it and persists, :class:`inference.detectors.fire_smoke.ClassicalFireSmoke`),
whose smoke regions are added where the network has no smoke box. Only on video: on a
camera's first frame that rule has no history and is not used.

A camera's first frame has no history and is reported as the network found it: a still
image (each eval image is a fresh camera) gets exactly the per-frame answer. A frame whose
size differs from the camera's previous one starts the camera afresh. The values of
:class:`TemporalConfig` were set before measuring (not tuned on any clip):
``docs/detectors.md`` says what they give.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorOutput
from inference.detectors.common import box_iou
from inference.detectors.fire_smoke import ClassicalFireSmoke
from inference.detectors.fire_smoke_net import NetFireSmoke

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

FIRE, SMOKE = int(ObjectClass.FIRE), int(ObjectClass.SMOKE)


@dataclass(frozen=True, slots=True)
class TemporalConfig:
    """How much evidence across frames a box needs.

    Attributes:
        window: Frames remembered per camera.
        persist: Frames of the window that need an overlapping box of the class.
        iou: Overlap that makes two boxes of consecutive frames the same object.
        fire_flicker: Least mean |Δ grey| (0..255) between consecutive frames inside a fire
            box beyond the frame's median |Δ grey|.
        smoke_drift: The same for smoke, between the window's oldest and newest frames.
        video_smoke_cue: Add the classical video smoke cue's regions (see the module doc).
        thumb_long_side: Long side of the grey thumbnails the differences are taken on.
        max_cameras: Cameras remembered (least recently seen forgotten first).
    """

    window: int = 8
    persist: int = 4
    iou: float = 0.1
    fire_flicker: float = 2.0
    smoke_drift: float = 1.5
    video_smoke_cue: bool = True
    thumb_long_side: int = 320
    max_cameras: int = 4096

    def __post_init__(self) -> None:
        if not 1 <= self.persist <= self.window:
            raise ValueError(f"persist {self.persist} must be within 1..window {self.window}")
        if self.thumb_long_side < 16:
            raise ValueError("thumb_long_side must be at least 16")


@dataclass
class _Camera:
    shape: tuple[int, int]
    scale: float
    greys: deque[npt.NDArray[np.int16]] = field(default_factory=deque)
    boxes: deque[dict[int, F32]] = field(default_factory=deque)
    # |Δ grey| of each consecutive pair of greys and its median over the frame (computed
    # once per frame, shared by every box).
    diffs: deque[tuple[npt.NDArray[np.int16], float]] = field(default_factory=deque)


class TemporalFireSmoke:
    """The ``det`` tier: the trained network with per-camera temporal confirmation
    (:class:`inference.detectors.base.DetectorBackend`).

    Args:
        net: The per-frame network backend.
        config: The evidence needed (:class:`TemporalConfig`).
    """

    name = "fire_smoke"
    tier = "det"

    def __init__(self, net: NetFireSmoke, config: TemporalConfig | None = None) -> None:
        self.net = net
        self.config = config or TemporalConfig()
        self._haze = ClassicalFireSmoke(fire=False) if self.config.video_smoke_cue else None
        self.model_file = net.model_file
        self.provider = net.provider
        self.batchable = net.batchable
        self._cams: OrderedDict[str, _Camera] = OrderedDict()
        self._lock = threading.Lock()

    def reset(self, camera_id: str | None = None) -> None:
        """Forget one camera's history (or every camera's)."""
        with self._lock:
            if camera_id is None:
                self._cams.clear()
            else:
                self._cams.pop(camera_id, None)
        if self._haze is not None:
            self._haze.reset(camera_id)

    def detect(self, frames: list[U8], camera_ids: list[str]) -> list[DetectorOutput]:
        """Per frame, the network's fire/smoke boxes that the camera's history confirms.

        Frames of one camera in one call are taken in order.
        """
        raw = self.net.detect(frames, camera_ids)  # validates frames and ids
        with self._lock:
            out = []
            for frame, cam, r in zip(frames, camera_ids, raw, strict=True):
                first = cam not in self._cams or self._cams[cam].shape != frame.shape[:2]
                kept = self._confirm(frame, cam, r)
                if self._haze is not None:
                    if first:
                        self._haze.reset(cam)
                    haze = self._haze.detect([frame], [cam])[0]
                    if not first:
                        kept = _add_smoke(kept, haze)
                out.append(kept)
            return out

    def _camera(self, cam: str, frame: U8) -> _Camera:
        h, w = frame.shape[:2]
        st = self._cams.get(cam)
        if st is None or st.shape != (h, w):
            scale = min(1.0, self.config.thumb_long_side / max(h, w))
            st = _Camera((h, w), scale)
            self._cams[cam] = st
        self._cams.move_to_end(cam)
        while len(self._cams) > self.config.max_cameras:
            gone, _ = self._cams.popitem(last=False)
            if self._haze is not None:
                self._haze.reset(gone)  # its per-camera state is bounded alike
        return st

    def _confirm(self, frame: U8, cam: str, out: DetectorOutput) -> DetectorOutput:
        cfg = self.config
        st = self._camera(cam, frame)
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if st.scale < 1.0:
            grey = cv2.resize(grey, None, fx=st.scale, fy=st.scale, interpolation=cv2.INTER_AREA)
        g = grey.astype(np.int16)
        if st.greys:
            d = np.abs(g - st.greys[-1])
            st.diffs.append((d, _median(d)))
        st.greys.append(g)
        st.boxes.append({c: out.boxes[out.class_ids == c] for c in (FIRE, SMOKE)})
        while len(st.greys) > cfg.window:
            st.greys.popleft()
            st.boxes.popleft()
        while len(st.diffs) > max(0, len(st.greys) - 1):
            st.diffs.popleft()
        if len(st.greys) == 1 or len(out) == 0:
            return out  # a still image, or nothing to confirm
        keep = np.asarray(
            [self._kept(st, b, int(c)) for b, c in zip(out.boxes, out.class_ids, strict=True)],
            bool,
        )
        return DetectorOutput(
            boxes=out.boxes[keep], scores=out.scores[keep], class_ids=out.class_ids[keep]
        )

    def _kept(self, st: _Camera, box: F32, cls: int) -> bool:
        cfg = self.config
        seen = sum(
            1
            for past in st.boxes
            if len(past[cls]) and float(box_iou(box[None], past[cls]).max()) >= cfg.iou
        )
        if seen < min(cfg.persist, len(st.boxes)):
            return False
        return _activity(st, box, cls) >= (cfg.fire_flicker if cls == FIRE else cfg.smoke_drift)


def _add_smoke(out: DetectorOutput, cue: DetectorOutput) -> DetectorOutput:
    """``out`` plus the smoke regions of ``cue`` that overlap none of its smoke boxes."""
    is_smoke = cue.class_ids == SMOKE
    sb, ss = cue.boxes[is_smoke], cue.scores[is_smoke]
    mine = out.boxes[out.class_ids == SMOKE]
    if len(sb) and len(mine):
        free = box_iou(sb, mine).max(axis=1) == 0
        sb, ss = sb[free], ss[free]
    if not len(sb):
        return out
    return DetectorOutput(
        boxes=np.concatenate([out.boxes, sb.astype(np.float32)]),
        scores=np.concatenate([out.scores, ss.astype(np.float32)]),
        class_ids=np.concatenate([out.class_ids, np.full(len(sb), SMOKE, out.class_ids.dtype)]),
    )


def _median(d: npt.NDArray[np.int16]) -> float:
    """Median of a difference image, on every 4th pixel each way (plenty for a median)."""
    return float(np.median(d[::4, ::4]))


def _activity(st: _Camera, box: F32, cls: int) -> float:
    """Mean |Δ grey| inside ``box`` beyond the frame's median |Δ grey| (see module doc)."""
    h, w = st.greys[-1].shape
    x1, y1, x2, y2 = (box * st.scale).tolist()
    xa, ya = max(0, int(x1)), max(0, int(y1))
    xb, yb = min(w, max(xa + 2, int(np.ceil(x2)))), min(h, max(ya + 2, int(np.ceil(y2))))
    if cls == FIRE:
        pairs = list(st.diffs)
    else:
        d = np.abs(st.greys[-1] - st.greys[0])
        pairs = [(d, _median(d))]
    vals = [float(d[ya:yb, xa:xb].mean()) - med for d, med in pairs]
    return float(np.mean(vals)) if vals else 0.0
