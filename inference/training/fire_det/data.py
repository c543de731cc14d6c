"""Training items of the fire/smoke detector: reading, source clips, splits by clip.

An :class:`Item` is one labelled image with boxes normalised to ``0..1`` and, per class,
whether its labels say anything about that class. A YOLO set knows only the classes its
``data.yaml`` names: ``fire_cctv`` labels fire only, and its news photos show big black smoke
plumes nobody boxed, so smoke is *unknown* there and masked out of the loss rather than
taught as "not smoke". ``fire_smoke_cctv``'s class 1 (``negative_scene``, a whole-frame box on
a scene with neither) is dropped by the class mapping, so those images are negatives for both
classes.
"""

from __future__ import annotations

import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inference.training.datasets import CLASSES, IMAGE_SUFFIXES, _canonical, _class_names

logger = logging.getLogger(__name__)

#: Consecutive numbers of an ``imageN``/``img_N`` frame series grouped into one pseudo-clip:
#: those series are frames of CCTV compilations (neighbours are near-identical), with no clip
#: name in the file name.
SERIES_BLOCK = 50


@dataclass
class Item:
    """One labelled training image.

    Attributes:
        path: Image file.
        boxes: ``[K, 5]`` float32 ``x1, y1, x2, y2`` (normalised to the image) and class index.
        known: Per class of :data:`inference.training.datasets.CLASSES`, whether the labels
            state its presence or absence.
        clip: Source clip (see :func:`clip_of`): frames of one clip never straddle a split.
        source: Dataset folder name.
    """

    path: Path
    boxes: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    known: tuple[bool, ...] = (True, True)
    clip: str = ""
    source: str = ""

    def has(self, cls: int) -> bool:
        """Whether a box of class index ``cls`` is labelled."""
        return bool((self.boxes[:, 4] == cls).any())

    @property
    def stratum(self) -> str:
        """``smoke``, ``fire`` or ``none``: what the split balances."""
        if self.has(1):
            return "smoke"
        if self.has(0):
            return "fire"
        return "none"


_RF_HASH = re.compile(r"\.rf\.[0-9a-f]{8,}$")
_EXT = re.compile(r"_(jpe?g|png|bmp)$", re.IGNORECASE)
_VIDEO_FRAME = re.compile(r"^(.*_(?:mp4|avi|mov|mkv))[-_]\d+$", re.IGNORECASE)
_SERIES = re.compile(r"^(image|img)[_-]?(\d+)$", re.IGNORECASE)
_NEWS = re.compile(r"^\d+-(.+)$")


def clip_of(path: Path | str) -> str:
    """Source clip of a Roboflow-exported frame, from its file name.

    * ``part1_mp4-130_jpg.rf.<hash>.jpg`` → ``part1_mp4`` (a video's frames);
    * ``smoke2_mp4__smoke2_mp4-14_jpg.rf.<hash>.jpg`` → ``smoke2_mp4`` (clip before ``__``);
    * ``img_lo__img_7_jpg...`` → ``img_lo#0`` (a collection of stills from CCTV clips, in
      blocks of consecutive numbers as below);
    * ``image405_jpg...`` / ``img_105_jpg...`` → ``image#8`` / ``img#2`` (unnamed frame series,
      blocks of :data:`SERIES_BLOCK` consecutive numbers);
    * ``12-factory_fire_jpg...`` → ``news:factory_fire`` (a single news photo);
    * anything else: the stem without its trailing number.
    """
    stem = _RF_HASH.sub("", Path(path).stem)
    while _EXT.search(stem):
        stem = _EXT.sub("", stem)
    if "__" in stem:
        prefix, rest = stem.split("__", 1)
        series = _SERIES.match(rest)
        if series and not _VIDEO_FRAME.match(rest):
            return f"{prefix.lower()}#{int(series.group(2)) // SERIES_BLOCK}"
        return prefix.lower()
    if m := _VIDEO_FRAME.match(stem):
        return m.group(1).lower()
    if m := _SERIES.match(stem):
        return f"{m.group(1).lower()}#{int(m.group(2)) // SERIES_BLOCK}"
    if m := _NEWS.match(stem):
        return f"news:{m.group(1).lower()}"
    return re.sub(r"[-_]?\d+$", "", stem).lower() or stem.lower()


def _image_dirs(root: Path) -> list[tuple[Path, Path]]:
    """``(images, labels)`` folder pairs: ``root/images`` or ``root/<split>/images``."""
    if (root / "images").is_dir():
        return [(root / "images", root / "labels")]
    return [
        (sub / "images", sub / "labels")
        for sub in sorted(p for p in root.iterdir() if p.is_dir())
        if (sub / "images").is_dir()
    ]


def read_items(root: Path | str, classes: tuple[str, ...] = CLASSES) -> list[Item]:
    """Read a YOLO-format set (``images/`` or ``train/images``, ``valid/images``...) into
    items; classes its ``data.yaml`` does not name are unknown for its images.

    Raises:
        FileNotFoundError: ``data.yaml`` or any images folder is missing.
    """
    root = Path(root)
    if not (root / "data.yaml").is_file():
        raise FileNotFoundError(f"no data.yaml in {root}")
    names = _class_names(root / "data.yaml")
    mapped = [_canonical(n, classes) for n in names]
    known = tuple(c in mapped for c in classes)
    dirs = _image_dirs(root)
    if not dirs:
        raise FileNotFoundError(f"no images/ folder in {root} or its split folders")
    items = []
    for images, labels in dirs:
        for img in sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            label = (labels / img.relative_to(images)).with_suffix(".txt")
            rows = []
            if label.is_file():
                for n, line in enumerate(label.read_text().splitlines(), 1):
                    parts = line.split()
                    if not parts:
                        continue
                    try:
                        idx = int(float(parts[0]))
                        cx, cy, w, h = (float(v) for v in parts[1:5])
                    except ValueError:
                        logger.warning("%s:%d: expected 'class cx cy w h', got %r", label, n, line)
                        continue
                    if len(parts) < 5 or not 0 <= idx < len(names):
                        logger.warning("%s:%d: bad line %r", label, n, line)
                        continue
                    cls = mapped[idx]
                    if cls is not None:
                        rows.append(
                            [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, classes.index(cls)]
                        )
            boxes = np.asarray(rows, np.float32).reshape(-1, 5)
            boxes[:, :4] = boxes[:, :4].clip(0.0, 1.0)
            keep = (boxes[:, 2] - boxes[:, 0] > 1e-3) & (boxes[:, 3] - boxes[:, 1] > 1e-3)
            items.append(Item(img, boxes[keep], known, clip_of(img), root.name))
    logger.info("%s: %d images, known classes %s", root.name, len(items), known)
    return items


def split_by_clip(
    items: list[Item], held_out_frac: float, seed: int
) -> tuple[list[Item], list[Item]]:
    """Hold out whole clips: about ``held_out_frac`` of each stratum's images.

    A clip belongs to the stratum of its rarest class (smoke, then fire, then none); clips
    are shuffled with ``seed`` and taken until the stratum's share is reached, so every
    stratum is represented on both sides where it has at least two clips.

    Returns:
        ``(train, held_out)``.
    """
    by_clip: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_clip[it.clip].append(it)
    order = {"smoke": 0, "fire": 1, "none": 2}
    strata: dict[str, list[str]] = defaultdict(list)
    for clip, its in by_clip.items():
        strata[min((i.stratum for i in its), key=order.__getitem__)].append(clip)
    rng = random.Random(seed)
    held: set[str] = set()
    for _, clips in sorted(strata.items()):
        clips.sort()
        rng.shuffle(clips)
        total = sum(len(by_clip[c]) for c in clips)
        taken = 0
        for c in clips:
            if len(clips) < 2 or taken >= held_out_frac * total:
                break
            # Never hold out a clip larger than the whole target (it would empty training).
            if taken + len(by_clip[c]) > 2 * held_out_frac * total and taken > 0:
                continue
            held.add(c)
            taken += len(by_clip[c])
    train = [i for i in items if i.clip not in held]
    out = [i for i in items if i.clip in held]
    return train, out
