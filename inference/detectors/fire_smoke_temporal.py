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
  least ``fire_flicker`` grey levels in the *typical* pair of the window (the median over
  the window's consecutive pairs). Fire flickers all the time; a person standing over a
  warm floor moves in bursts (a step, a shift of weight), and one burst used to lift the
  window's mean over the threshold for several frames (the one false alarm on the street
  clips, see the model card). Smoke: the same between the oldest and the newest frame of
  the window (smoke drifts slowly; a frame-to-frame difference is too small) is at least
  ``smoke_drift``.

**Per camera** the values come from the camera's ``fire_smoke`` settings
(:class:`citysight.config.FireSmokeCameraConfig`: a ``low``/``normal``/``high`` preset and
overrides), sent with each of its frames as JSON (``FrameBatch.options``); they may also
change the network's input size and class thresholds for that camera. A camera that sends
none gets the tier's :class:`TemporalConfig`.

**Faint smoke on video** (a thin veil far away, which the network was hardly trained on:
the model card lists it as a failure case) comes from a second, classical cue: the
``classical`` tier's video smoke rule (a greyish, semi-transparent foreground that blurs the
texture behind it and persists, :class:`inference.detectors.fire_smoke.ClassicalFireSmoke`),
whose smoke regions are added where the network has no smoke box. Only on video: on a
camera's first frame that rule has no history and is not used. It runs on the same
320-pixel-wide copy of the frame the temporal differences are taken on (made once per
frame), and on every ``smoke_cue_every``-th frame of a camera (smoke is slow; the frames
between reuse its last regions), which keeps the tier within the per-frame CPU budget.

A camera's first frame has no history and is reported as the network found it: a still
image (each eval image is a fresh camera) gets exactly the per-frame answer. A frame whose
size (or camera settings) differs from the camera's previous one starts the camera afresh.
The values of :class:`TemporalConfig` were set before measuring; the flame-pixel flicker and
the median over pairs were designed on two clips (house6 and the one-by-one person clip,
where the false alarm was) and measured on the others too: ``docs/detectors.md`` says which.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from citysight.config import FireSmokeCameraConfig
from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorOutput
from inference.detectors.common import box_iou
from inference.detectors.fire_smoke import WORK_WIDTH, ClassicalFireSmoke
from inference.detectors.fire_smoke_net import NetFireSmoke

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

FIRE, SMOKE = int(ObjectClass.FIRE), int(ObjectClass.SMOKE)
#: Grey / red level above which a pixel can be flame (the classical colour rule's 170).
FLAME_LEVEL = 170
#: Flame-like pixels a fire box needs in a pair of frames for its flicker to count.
MIN_FLAME_PIXELS = 3


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
        smoke_cue_every: Run that cue on every Nth frame of a camera (1: every frame).
        max_cameras: Cameras remembered (least recently seen forgotten first).
        input_long_side: The network's input long side (``None``: the model file's).
        thresholds: Per-class score thresholds in the file's class order (``None``: the
            file's).
    """

    window: int = 8
    persist: int = 4
    iou: float = 0.1
    fire_flicker: float = 2.0
    smoke_drift: float = 1.5
    video_smoke_cue: bool = True
    smoke_cue_every: int = 2
    max_cameras: int = 4096
    input_long_side: int | None = None
    thresholds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.persist <= self.window:
            raise ValueError(f"persist {self.persist} must be within 1..window {self.window}")
        if self.smoke_cue_every < 1:
            raise ValueError("smoke_cue_every must be at least 1")

    def for_camera(
        self, cam: FireSmokeCameraConfig, classes: tuple[str, ...], file: tuple[float, ...]
    ) -> TemporalConfig:
        """This config with a camera's ``fire_smoke`` settings applied.

        Args:
            cam: The camera's settings (a preset and overrides).
            classes: The model file's class names (lower case), in output order.
            file: The model file's thresholds, in the same order.
        """
        v = cam.resolved()
        shift = float(v["threshold_shift"])
        explicit = {"fire": cam.fire_threshold, "smoke": cam.smoke_threshold}
        ths = tuple(
            float(explicit[c]) if explicit.get(c) is not None else min(0.99, max(0.01, t + shift))  # type: ignore[arg-type]
            for c, t in zip(classes, file, strict=True)
        )
        return replace(
            self,
            window=int(v["window"]),
            persist=int(v["persist"]),
            fire_flicker=float(v["fire_flicker"]),
            smoke_drift=float(v["smoke_drift"]),
            input_long_side=int(v["input_long_side"]),
            thresholds=ths,
        )


@dataclass
class _Camera:
    shape: tuple[int, int]
    scale: float
    config: TemporalConfig
    frames: int = 0
    cue: DetectorOutput = field(default_factory=DetectorOutput)
    greys: deque[npt.NDArray[np.int16]] = field(default_factory=deque)
    flames: deque[npt.NDArray[np.bool_]] = field(default_factory=deque)  # flame-like pixels
    boxes: deque[dict[int, F32]] = field(default_factory=deque)
    # |Δ grey| of each consecutive pair of greys and its median over the frame (computed
    # once per frame, shared by every box).
    diffs: deque[tuple[npt.NDArray[np.int16], float]] = field(default_factory=deque)


class TemporalFireSmoke:
    """The ``det`` tier: the trained network with per-camera temporal confirmation
    (:class:`inference.detectors.base.DetectorBackend`).

    Args:
        net: The per-frame network backend.
        config: The evidence needed by a camera that sends no settings
            (:class:`TemporalConfig`).
    """

    name = "fire_smoke"
    tier = "det"
    #: ``detect`` takes each frame's camera settings (``FrameBatch.options``).
    takes_options = True

    def __init__(self, net: NetFireSmoke, config: TemporalConfig | None = None) -> None:
        self.net = net
        self.config = config or TemporalConfig()
        self._haze = ClassicalFireSmoke(fire=False) if self.config.video_smoke_cue else None
        self.model_file = net.model_file
        self.provider = net.provider
        self.batchable = net.batchable
        self._cams: OrderedDict[str, _Camera] = OrderedDict()
        self._settings: dict[str, TemporalConfig] = {}  # options JSON → resolved config
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

    def camera_config(self, options: str | None) -> TemporalConfig:
        """The config of a camera whose frames carry ``options`` (its ``fire_smoke``
        settings as JSON, empty or ``None`` for the defaults).

        Raises:
            ValueError: the settings are not valid ``FireSmokeCameraConfig`` JSON.
        """
        if not options:
            return self.config
        cfg = self._settings.get(options)
        if cfg is None:
            try:
                cam = FireSmokeCameraConfig.model_validate(json.loads(options))
            except ValueError as exc:
                raise ValueError(
                    f"bad fire_smoke camera settings {options[:200]!r}: {exc}"
                ) from exc
            cfg = self.config.for_camera(cam, self.net.class_names(), self.net.thresholds)
            if len(self._settings) > 1024:  # a bounded cache: settings rarely change
                self._settings.clear()
            self._settings[options] = cfg
        return cfg

    def detect(
        self, frames: list[U8], camera_ids: list[str], options: list[str] | None = None
    ) -> list[DetectorOutput]:
        """Per frame, the network's fire/smoke boxes that the camera's history confirms.

        Frames of one camera in one call are taken in order.

        Args:
            frames: BGR ``uint8`` frames.
            camera_ids: Camera of each frame.
            options: Per frame, its camera's ``fire_smoke`` settings as JSON (see
                :meth:`camera_config`); ``None`` or ``""``: the defaults.

        Raises:
            ValueError: mismatched lengths, bad frames or bad settings (nothing is changed).
        """
        opts = options if options is not None else [""] * len(frames)
        if len(opts) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(opts)} options")
        cfgs = [self.camera_config(o) for o in opts]
        raw = self.net.detect(  # validates frames and ids
            frames,
            camera_ids,
            long_sides=[c.input_long_side or self.net.long_side for c in cfgs],
            thresholds=[c.thresholds or self.net.thresholds for c in cfgs],
        )
        with self._lock:
            out = []
            for frame, cam, r, cfg in zip(frames, camera_ids, raw, cfgs, strict=True):
                first = (
                    cam not in self._cams
                    or self._cams[cam].shape != frame.shape[:2]
                    or self._cams[cam].config != cfg
                )
                st = self._camera(cam, frame, cfg)
                small = _small(frame)
                kept = self._confirm(st, small, r)
                if self._haze is not None:
                    if first:
                        self._haze.reset(cam)
                    if first or (st.frames - 1) % cfg.smoke_cue_every == 0:
                        cue = self._haze.detect([small], [cam])[0]
                        k = frame.shape[1] / small.shape[1]
                        st.cue = DetectorOutput(
                            boxes=cue.boxes * np.float32(k),
                            scores=cue.scores,
                            class_ids=cue.class_ids,
                        )
                    if not first:
                        kept = _add_smoke(kept, st.cue)
                out.append(kept)
            return out

    def _camera(self, cam: str, frame: U8, cfg: TemporalConfig) -> _Camera:
        h, w = frame.shape[:2]
        st = self._cams.get(cam)
        if st is None or st.shape != (h, w) or st.config != cfg:
            # The thumbnails are the cue's 320-wide copy (never upscaled).
            st = _Camera((h, w), min(1.0, WORK_WIDTH / w), cfg)
            self._cams[cam] = st
        self._cams.move_to_end(cam)
        while len(self._cams) > self.config.max_cameras:
            gone, _ = self._cams.popitem(last=False)
            if self._haze is not None:
                self._haze.reset(gone)  # its per-camera state is bounded alike
        st.frames += 1
        return st

    def _confirm(self, st: _Camera, small: U8, out: DetectorOutput) -> DetectorOutput:
        cfg = st.config
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if st.scale >= 1.0 and grey.shape[1] != st.shape[1]:
            grey = cv2.resize(grey, (st.shape[1], st.shape[0]), interpolation=cv2.INTER_AREA)
        g = grey.astype(np.int16)
        if st.greys:
            d = np.abs(g - st.greys[-1])
            st.diffs.append((d, _median(d)))
        st.greys.append(g)
        st.flames.append(_flame_pixels(small, grey))
        st.boxes.append({c: out.boxes[out.class_ids == c] for c in (FIRE, SMOKE)})
        while len(st.greys) > cfg.window:
            st.greys.popleft()
            st.flames.popleft()
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
        cfg = st.config
        seen = sum(
            1
            for past in st.boxes
            if len(past[cls]) and float(box_iou(box[None], past[cls]).max()) >= cfg.iou
        )
        if seen < min(cfg.persist, len(st.boxes)):
            return False
        return _activity(st, box, cls) >= (cfg.fire_flicker if cls == FIRE else cfg.smoke_drift)


def _flame_pixels(small: U8, grey: npt.NDArray[np.number[Any]]) -> npt.NDArray[np.bool_]:
    """Pixels that look like flame, at the thumbnails' size: bright and warm (red ≥ green >
    blue, red above 170, the RGB part of the classical colour rule) in colour video; the
    bright ones (grey above 170) in greyscale (night/IR) video, where there is no colour."""
    b, g, r = (small[:, :, i].astype(np.int16) for i in range(3))
    if float(np.abs(r[::4, ::4] - b[::4, ::4]).mean()) < 2.0:  # a greyscale picture
        m = grey > FLAME_LEVEL
    else:
        m = (r > FLAME_LEVEL) & (r >= g) & (g > b)
        if m.shape != grey.shape:
            m = (
                cv2.resize(m.astype(np.uint8), grey.shape[::-1], interpolation=cv2.INTER_NEAREST)
                > 0
            )
    return np.asarray(m, bool)


def _small(frame: U8) -> U8:
    """The frame at the classical cue's working width (its own resize, done once here)."""
    h, w = frame.shape[:2]
    if w == WORK_WIDTH:
        return frame
    size = (WORK_WIDTH, max(1, round(h * WORK_WIDTH / w)))
    return cast(U8, cv2.resize(frame, size, interpolation=cv2.INTER_AREA))


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
        # Only the pixels that look like flame in both frames of a pair: a dark leg moving
        # over a warm floor changes the box, but not at pixels that stay flame-like.
        flames = list(st.flames)
        vals = []
        for k, (d, med) in enumerate(st.diffs):
            m = flames[k][ya:yb, xa:xb] & flames[k + 1][ya:yb, xa:xb]
            n = int(m.sum())
            vals.append(float(d[ya:yb, xa:xb][m].mean()) - med if n >= MIN_FLAME_PIXELS else 0.0)
    else:
        d = np.abs(st.greys[-1] - st.greys[0])
        vals = [float(d[ya:yb, xa:xb].mean()) - _median(d)]
    # The typical pair, not the mean: fire flickers in most pairs, a moving person's burst
    # lifts one or two (see the module doc).
    return float(np.median(vals)) if vals else 0.0
