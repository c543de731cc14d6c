"""Synthetic training material: street backgrounds, smoke composites, generated hard negatives.

Everything here is labelled synthetic wherever it is used (the model card says how much of an
epoch it is):

* **Backgrounds** (:class:`Backgrounds`): frames of the no-fire street clips named in
  :data:`TRAIN_NEGATIVE_CLIPS` of ``../shared/data/videos`` (the other clips are kept out for
  the false-alarm measurement), and frames of the project's procedural demo scenes without
  fire or smoke (``streams.synthetic``: plate, face, vending). The scenes are handed in by
  the caller (``citysight models train fire_smoke`` passes ``streams.synthetic.scenes.SCENES``):
  the inference layer does not import the streams layer.
* **Smoke composites** (:func:`composite_smoke`): plumes cut from
  ``pyronear_test_smoke.mp4`` (a plume on black, Apache-2.0, pyronear/synthetic-dataset; its
  luminance is the plume's opacity) blended onto backgrounds at random scale, opacity and
  grey level (white and black smoke), for the outdoor / high-point case the training sets
  lack. Boxed as smoke.
* **Hard negatives** (:func:`hard_negative`): generated on backgrounds: sunset skies and sun
  glare, traffic lights, brake-light pairs, night headlights with bloom, sodium street lamps,
  neon strokes, orange/red objects (vests, cones, buses), dust and fog veils. Labelled as
  containing neither class. Steam is deliberately not generated: a steam plume looks like the
  smoke the composites teach, so it would contradict them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

#: No-fire clips of ``../shared/data/videos`` whose frames train as negatives and backgrounds.
#: ``street-720p.mp4``/``street-1080p.mp4`` re-encode the car-detection clip, so they count as
#: seen too.
TRAIN_NEGATIVE_CLIPS: tuple[str, ...] = (
    "street_intel_car-detection.mp4",
    "street_intel_classroom.gif",
    "street_intel_store-aisle-detection.gif",
    "street_intel_worker-zone-detection.gif",
)
#: No-fire clip whose frames are held-out negatives for choosing thresholds (never trained on).
VALIDATION_NEGATIVE_CLIPS: tuple[str, ...] = ("street_intel_bottle-detection.mp4",)
#: No-fire clips neither trained on nor used for any choice: the clean false-alarm measure.
UNSEEN_NEGATIVE_CLIPS: tuple[str, ...] = (
    "street_intel_one-by-one-person-detection.mp4",
    "street_intel_people-detection.gif",
    "street_intel_person-bicycle-car-detection.gif",
    "street_intel_face-demographics-walking-and-pause.gif",
    "pyronear_test_bg.mp4",
)
#: Demo scenes without fire or smoke used as synthetic backgrounds.
DEMO_BACKGROUND_SCENES: tuple[str, ...] = ("plate", "face", "vending")
SMOKE_VIDEO = "pyronear_test_smoke.mp4"
#: Long side of stored background frames (pixels).
BANK_SIZE = 480


def video_frames(path: Path, count: int, long_side: int | None = BANK_SIZE) -> list[U8]:
    """``count`` frames spread evenly over a video or GIF, resized to ``long_side`` (``None``:
    as decoded).

    Raises:
        FileNotFoundError: the file cannot be opened.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    total = 0
    while cap.grab():  # count without decoding (GIF frame counts are not in the header)
        total += 1
    cap.release()
    if not total:
        raise FileNotFoundError(f"no frames in {path}")
    wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
    frames: list[U8] = []
    cap = cv2.VideoCapture(str(path))
    for i in range(total):
        ok, f = cap.read()
        if not ok:
            break
        if i not in wanted:
            continue
        if long_side is None:
            frames.append(np.asarray(f, np.uint8))
            continue
        s = long_side / max(f.shape[:2])
        frames.append(
            np.asarray(cv2.resize(f, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), np.uint8)
        )
    cap.release()
    return frames


#: A procedural scene class (``streams.synthetic.scenes.SCENES`` values): ``(size, fps,
#: seconds)`` → an object with ``num_frames`` and ``draw(index)`` (RGB ``uint8``).
SceneFactory = Callable[[tuple[int, int], int, float], Any]
_DEMO_CACHE: dict[tuple[int, str, int, int], tuple[U8, ...]] = {}


def demo_frames(
    scenes: Mapping[str, SceneFactory], scene: str, count: int, long_side: int = BANK_SIZE
) -> list[U8]:
    """``count`` BGR frames of procedural demo scene ``scene`` drawn by ``scenes[scene]``."""
    # Drawing is deterministic and takes seconds: draw once per process.
    key = (id(scenes), scene, count, long_side)
    if key not in _DEMO_CACHE:
        w, h = long_side, round(long_side * 9 / 16) // 2 * 2
        drawer = scenes[scene]((w, h), 10, 20.0)
        idx = np.linspace(0, drawer.num_frames - 1, count).round().astype(int)
        _DEMO_CACHE[key] = tuple(
            np.ascontiguousarray(np.asarray(drawer.draw(int(i)), np.uint8)[:, :, ::-1]) for i in idx
        )
    return [f.copy() for f in _DEMO_CACHE[key]]


@dataclass
class Backgrounds:
    """In-memory bank of background frames (BGR ``uint8``) and their origin names."""

    frames: list[U8]
    origins: list[str]

    @classmethod
    def load(
        cls,
        videos_dir: Path | None,
        per_clip: int = 40,
        demo_per_scene: int = 24,
        scenes: Mapping[str, SceneFactory] | None = None,
    ) -> Backgrounds:
        """Frames of :data:`TRAIN_NEGATIVE_CLIPS` (when ``videos_dir`` has them) and of the
        :data:`DEMO_BACKGROUND_SCENES` of ``scenes`` (none when ``scenes`` is ``None``).

        Raises:
            ValueError: neither gave a frame.
        """
        frames: list[U8] = []
        origins: list[str] = []
        if videos_dir is not None:
            for name in TRAIN_NEGATIVE_CLIPS:
                path = videos_dir / name
                if not path.is_file():
                    logger.warning("background clip missing: %s", path)
                    continue
                got = video_frames(path, per_clip)
                frames += got
                origins += [name] * len(got)
        if scenes is None:
            logger.warning("no demo scenes given: the background bank has no demo-scene frames")
            scenes = {}
        for scene in DEMO_BACKGROUND_SCENES if scenes else ():
            got = demo_frames(scenes, scene, demo_per_scene)
            frames += got
            origins += [f"demo:{scene}"] * len(got)
        if not frames:
            raise ValueError(
                "no background frames: give the videos folder (--videos) or train through "
                "`citysight models train fire_smoke`, which adds the demo scenes"
            )
        logger.info("background bank: %d frames from %d sources", len(frames), len(set(origins)))
        return cls(frames, origins)

    def canvas(self, rng: np.random.Generator, size: int) -> U8:
        """A random background frame as a ``size × size`` canvas (random crop, flip, scale)."""
        f = self.frames[int(rng.integers(len(self.frames)))]
        h, w = f.shape[:2]
        # Cover the canvas at a random zoom: sometimes the whole frame squeezed, often a crop.
        zoom = rng.uniform(1.0, 2.2)
        s = size * zoom / min(h, w) if rng.random() < 0.6 else size / max(h, w) * zoom
        s = max(s, size / min(h, w))
        r = cv2.resize(f, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
        y = int(rng.integers(0, r.shape[0] - size + 1))
        x = int(rng.integers(0, r.shape[1] - size + 1))
        out = np.ascontiguousarray(r[y : y + size, x : x + size])
        return out[:, ::-1].copy() if rng.random() < 0.5 else out


def load_plumes(video: Path, count: int = 36) -> list[F32]:
    """Opacity maps ``[h, w]`` (0..1) of the plume in ``video``, cropped to the plume.

    Frames whose plume is too small to box are skipped.

    Raises:
        FileNotFoundError: the video cannot be opened.
    """
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {video}")
    frames = []
    ok, frame = cap.read()
    while ok:
        frames.append(frame)
        ok, frame = cap.read()
    cap.release()
    plumes = []
    for i in np.linspace(0, len(frames) - 1, count).round().astype(int):
        grey = cv2.cvtColor(frames[int(i)], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
        # The black background is not quite 0 after H.264: a floor keeps it transparent.
        alpha = np.clip((grey - 0.06) / 0.8, 0.0, 1.0)
        ys, xs = np.nonzero(alpha > 0.1)
        if len(ys) < 400:
            continue
        crop = alpha[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        plumes.append(np.ascontiguousarray(crop))
    logger.info("loaded %d smoke plumes from %s", len(plumes), video.name)
    return plumes


def composite_smoke(
    canvas: U8, plumes: list[F32], rng: np.random.Generator
) -> tuple[U8, npt.NDArray[np.float32]]:
    """Blend one or two plumes onto ``canvas``; returns the image and ``[K, 4]`` smoke boxes."""
    size = canvas.shape[0]
    img = canvas.astype(np.float32)
    boxes = []
    for _ in range(1 if rng.random() < 0.75 else 2):
        alpha = plumes[int(rng.integers(len(plumes)))]
        target_h = size * rng.uniform(0.12, 0.7)
        s = target_h / alpha.shape[0]
        sx = s * rng.uniform(0.7, 1.6)  # wind-blown (wide) or narrow plumes
        a = cv2.resize(alpha, None, fx=sx, fy=s, interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            a = a[:, ::-1]
        if rng.random() < 0.3:  # leaning in the wind
            ang = rng.uniform(-25, 25)
            m = cv2.getRotationMatrix2D((a.shape[1] / 2, a.shape[0]), ang, 1.0)
            a = cv2.warpAffine(a, m, (a.shape[1], a.shape[0]))
        a = np.clip(a, 0, 1) ** rng.uniform(0.7, 1.5) * rng.uniform(0.35, 0.95)
        ah, aw = a.shape
        if ah < 8 or aw < 8:
            continue
        x0 = int(rng.integers(-aw // 4, max(1, size - aw * 3 // 4)))
        y0 = int(rng.integers(-ah // 5, max(1, size - ah)))
        xa, ya = max(0, -x0), max(0, -y0)
        xb, yb = min(aw, size - x0), min(ah, size - y0)
        if xb - xa < 6 or yb - ya < 6:
            continue
        part = a[ya:yb, xa:xb]
        # White/grey smoke mostly; black smoke (burning plastics, tyres) a quarter of the time.
        grey = rng.uniform(150, 245) if rng.random() < 0.75 else rng.uniform(35, 110)
        tint = np.array([grey, grey, grey], np.float32) + rng.uniform(-8, 8, 3).astype(np.float32)
        region = img[y0 + ya : y0 + yb, x0 + xa : x0 + xb]
        region[:] = region * (1 - part[..., None]) + tint * part[..., None]
        ys, xs = np.nonzero(part > 0.12 * max(float(part.max()), 1e-6))
        if len(ys) < 30:
            continue
        boxes.append(
            [x0 + xa + xs.min(), y0 + ya + ys.min(), x0 + xa + xs.max() + 1, y0 + ya + ys.max() + 1]
        )
    out = np.clip(img, 0, 255).astype(np.uint8)
    return out, np.asarray(boxes, np.float32).reshape(-1, 4)


def _screen(img: F32, layer: F32) -> F32:
    """Screen blend (light adds, never exceeds white)."""
    return 255.0 - (255.0 - img) * (255.0 - np.clip(layer, 0, 255)) / 255.0


def _night(img: F32, rng: np.random.Generator) -> F32:
    dark = 255.0 * (img / 255.0) ** rng.uniform(1.6, 2.6) * rng.uniform(0.35, 0.7)
    return dark * np.array([1.1, 1.0, 0.9], np.float32)  # bluish night white balance


def _glow(
    size: int, rng: np.random.Generator, n: int, colours: list[Any], radius: tuple[int, int]
) -> F32:
    layer = np.zeros((size, size, 3), np.float32)
    for _ in range(n):
        c = colours[int(rng.integers(len(colours)))]
        x, y = int(rng.integers(0, size)), int(rng.integers(0, size))
        r = int(rng.integers(*radius))
        cv2.circle(layer, (x, y), r, c, -1, cv2.LINE_AA)
    core = layer.copy()
    sigma = rng.uniform(3, 10)
    return core + 1.6 * cv2.GaussianBlur(layer, (0, 0), sigma)


def _sunset(img: F32, rng: np.random.Generator) -> F32:
    size = img.shape[0]
    horizon = int(size * rng.uniform(0.25, 0.65))
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None]
    low = np.array([rng.uniform(20, 80), rng.uniform(90, 170), rng.uniform(220, 255)], np.float32)
    high = np.array([rng.uniform(120, 200), rng.uniform(60, 120), rng.uniform(80, 160)], np.float32)
    sky = high * (1 - t[..., None]) + low * t[..., None]
    a = rng.uniform(0.6, 1.0)
    img[:horizon] = img[:horizon] * (1 - a) + np.broadcast_to(sky, (horizon, size, 3)) * a
    if rng.random() < 0.7:
        sun = np.zeros_like(img)
        x, y = int(rng.integers(0, size)), int(horizon * rng.uniform(0.5, 1.0))
        r = int(rng.integers(4, 22))
        cv2.circle(sun, (x, y), r, (150, 230, 255), -1, cv2.LINE_AA)
        sun += 2.0 * cv2.GaussianBlur(sun, (0, 0), r * 1.5)
        img = _screen(img, sun)
    # Warm cast over the whole scene at golden hour.
    return img * np.array([0.85, 0.95, 1.12], np.float32)


def _lights(img: F32, rng: np.random.Generator) -> F32:
    size = img.shape[0]
    img = _night(img, rng) if rng.random() < 0.75 else img
    layer = np.zeros_like(img)
    kinds = rng.integers(0, 5, int(rng.integers(2, 9)))
    for k in kinds:
        x, y = int(rng.integers(0, size)), int(rng.integers(size // 5, size))
        if k == 0:  # brake lights / tail lights: a pair of red ellipses
            gap, r = int(rng.integers(14, 80)), int(rng.integers(3, 9))
            for dx in (-gap // 2, gap // 2):
                cv2.ellipse(
                    layer, (x + dx, y), (r * 2, r), 0, 0, 360, (30, 30, 255), -1, cv2.LINE_AA
                )
        elif k == 1:  # headlights: white-yellow pair
            gap, r = int(rng.integers(14, 80)), int(rng.integers(3, 10))
            for dx in (-gap // 2, gap // 2):
                cv2.circle(layer, (x + dx, y), r, (200, 245, 255), -1, cv2.LINE_AA)
        elif k == 2:  # traffic light: housing and one lit lamp
            r = int(rng.integers(3, 8))
            cv2.rectangle(img, (x - 2 * r, y - 7 * r), (x + 2 * r, y + 7 * r), (25, 25, 25), -1)
            lamp = int(rng.integers(3))
            col = [(40, 40, 255), (0, 170, 255), (120, 255, 60)][lamp]
            cv2.circle(layer, (x, y + (lamp - 1) * 4 * r), r, col, -1, cv2.LINE_AA)
        elif k == 3:  # sodium street lamp
            cv2.circle(layer, (x, y // 2), int(rng.integers(3, 9)), (60, 160, 255), -1, cv2.LINE_AA)
        else:  # neon: a glowing polyline
            steps = rng.integers(-30, 31, (int(rng.integers(3, 8)), 2))
            pts = np.cumsum(steps, 0) + np.asarray([x, y])
            neon = [(180, 60, 255), (60, 60, 255), (40, 140, 255), (255, 220, 60), (255, 80, 200)]
            cv2.polylines(
                layer,
                [pts.astype(np.int32)],
                False,
                neon[int(rng.integers(len(neon)))],
                int(rng.integers(2, 5)),
                cv2.LINE_AA,
            )
    sigma = rng.uniform(2.5, 9)
    bloom = layer + 1.8 * cv2.GaussianBlur(layer, (0, 0), sigma)
    if rng.random() < 0.3:  # lens streaks of strong lights
        bloom += 0.8 * cv2.blur(layer, (int(size * 0.3) | 1, 3))
    return _screen(img, bloom)


def _orange_objects(img: F32, rng: np.random.Generator) -> F32:
    size = img.shape[0]
    for _ in range(int(rng.integers(1, 5))):
        col = (rng.uniform(0, 60), rng.uniform(60, 180), rng.uniform(200, 255))
        x, y = int(rng.integers(0, size)), int(rng.integers(0, size))
        w, h = int(rng.integers(6, size // 4)), int(rng.integers(6, size // 3))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + w, y + h), col, -1)
        elif rng.random() < 0.5:
            cone = np.array([[x, y + h], [x + w // 2, y], [x + w, y + h]], np.int32)
            cv2.fillPoly(img, [cone], col, cv2.LINE_AA)
        else:
            cv2.ellipse(img, (x, y), (w // 2, h // 2), float(rng.uniform(0, 180)), 0, 360, col, -1)
    return img


def _veil(img: F32, rng: np.random.Generator) -> F32:
    """Fog (grey-white) or dust (brownish) veil with a vertical density gradient."""
    size = img.shape[0]
    if rng.random() < 0.5:
        air = np.array([rng.uniform(190, 235)] * 3, np.float32)
    else:
        air = np.array(
            [rng.uniform(90, 150), rng.uniform(140, 185), rng.uniform(170, 215)], np.float32
        )
    top, bottom = rng.uniform(0.15, 0.55), rng.uniform(0.0, 0.35)
    t = np.linspace(top, bottom, size, dtype=np.float32)[:, None, None]
    return np.asarray(img * (1 - t) + air * t, np.float32)


HARD_NEGATIVE_KINDS = ("sunset", "lights", "orange", "veil")


def hard_negative(canvas: U8, rng: np.random.Generator) -> tuple[U8, str]:
    """One generated hard negative on ``canvas`` (no fire, no smoke) and its kind."""
    img = canvas.astype(np.float32)
    kind = HARD_NEGATIVE_KINDS[int(rng.integers(len(HARD_NEGATIVE_KINDS)))]
    if kind == "sunset":
        img = _sunset(img, rng)
        if rng.random() < 0.4:
            img = _lights(img, rng)
    elif kind == "lights":
        img = _lights(img, rng)
    elif kind == "orange":
        img = _orange_objects(img, rng)
    else:
        img = _veil(img, rng)
    return np.clip(img, 0, 255).astype(np.uint8), kind
