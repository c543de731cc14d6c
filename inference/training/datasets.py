"""Fire/smoke training data: YOLO-format datasets and the project's ``labels.json`` format.

Two on-disk formats are read into the same :class:`Sample` list:

* YOLO format: ``data.yaml`` (``names`` as a list or an ``{id: name}`` mapping),
  ``images/**`` and ``labels/**`` mirroring it, one ``class cx cy w h`` line per box
  (normalised to the image size). An image without a label file (or with an empty one) is a
  negative for every class.
* The evaluation format of ``../shared/data/README.md``: ``labels.json`` with a ``task``
  (``fire`` or ``smoke``) and ``images[].objects[].box`` (``[x1, y1, x2, y2]`` pixels or
  ``null`` where only the image-level label is known). Such a set only says something about
  its own task's class: the other classes stay *unknown* for its images (see
  :attr:`Sample.known`) unless another set labels the same file.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("fire", "smoke")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

# Box: class name and x1, y1, x2, y2 in pixels, or ``None`` where only the label is known.
Box = tuple[str, tuple[float, float, float, float] | None]


@dataclass
class Sample:
    """One labelled image.

    Attributes:
        path: Image file.
        boxes: ``(class name, box)`` pairs; ``box`` is ``(x1, y1, x2, y2)`` in pixels of the
            image as stored, or ``None`` when only the image-level label is known. YOLO boxes
            are kept normalised (``0..1``) — see ``normalised``.
        known: Class names whose presence or absence this sample's labels state.
        normalised: ``True`` when ``boxes`` are in ``0..1`` units (YOLO) instead of pixels.
        group: Source group (video or collection) used to keep related frames on one side of
            a train/validation split; see :func:`group_of`.
    """

    path: Path
    boxes: list[Box] = field(default_factory=list)
    known: set[str] = field(default_factory=set)
    normalised: bool = False
    group: str = ""

    def __post_init__(self) -> None:
        if not self.group:
            self.group = group_of(self.path)

    def has(self, cls: str) -> bool:
        """Whether the image contains class ``cls``."""
        return any(c == cls for c, _ in self.boxes)

    def targets(self, classes: tuple[str, ...] = CLASSES) -> tuple[list[float], list[float]]:
        """Multi-hot targets and a mask (1 where the label is known) in ``classes`` order."""
        return (
            [1.0 if self.has(c) else 0.0 for c in classes],
            [1.0 if c in self.known else 0.0 for c in classes],
        )


_FRAME_SUFFIX = re.compile(r"(?:[_\-.](?:f|frame)?)?\d+$", re.IGNORECASE)
_SPLIT_PREFIX = re.compile(r"(^|__|/)(train|valid|val|test)[_\-]", re.IGNORECASE)


def group_of(path: Path | str) -> str:
    """Source group of an image: its file name without the trailing frame number.

    ``house6_f0092.jpg`` → ``house6``; Roboflow-style exports that put frames of one video
    into several splits (``train_smoke2_mp4-14``, ``valid_smoke2_mp4-4``) map to one group
    (``smoke2_mp4``), so frames of one video never land on both sides of a split.
    """
    stem = Path(path).stem
    # Roboflow appends ``.rf.<hash>`` to exported file names.
    stem = re.sub(r"\.rf\.[0-9a-f]{8,}$", "", stem)
    stem = _FRAME_SUFFIX.sub("", stem)
    stem = _SPLIT_PREFIX.sub(r"\1", stem)
    return stem.lower() or "_"


def _class_names(data_yaml: Path) -> list[str]:
    meta = yaml.safe_load(data_yaml.read_text()) or {}
    names = meta.get("names", [])
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    return [str(n).lower() for n in names]


def _canonical(name: str, classes: tuple[str, ...]) -> str | None:
    """Map a dataset class name onto one of ``classes`` (``"Fire-Flame"`` → ``"fire"``)."""
    low = name.lower()
    for c in classes:
        if c in low:
            return c
    return None


def read_yolo(root: Path | str, classes: tuple[str, ...] = CLASSES) -> list[Sample]:
    """Read a YOLO-format dataset.

    Args:
        root: Folder with ``data.yaml``, ``images/`` and ``labels/``.
        classes: Class names to keep; a dataset class maps to the first of these its name
            contains (other dataset classes are dropped).

    Returns:
        One sample per image; every class in ``classes`` is known for every image.

    Raises:
        FileNotFoundError: ``data.yaml`` or ``images/`` is missing.
    """
    root = Path(root)
    yaml_path = root / "data.yaml"
    if not yaml_path.is_file():
        raise FileNotFoundError(f"no data.yaml in {root}")
    names = _class_names(yaml_path)
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"no images/ folder in {root}")
    samples = []
    for img in sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        rel = img.relative_to(images)
        label = (root / "labels" / rel).with_suffix(".txt")
        boxes: list[Box] = []
        if label.is_file():
            for n, line in enumerate(label.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 5:
                    logger.warning("%s:%d: expected 'class cx cy w h', got %r", label, n, line)
                    continue
                idx = int(float(parts[0]))
                if not 0 <= idx < len(names):
                    logger.warning("%s:%d: class %d not in data.yaml names", label, n, idx)
                    continue
                cls = _canonical(names[idx], classes)
                if cls is None:
                    continue
                cx, cy, w, h = (float(v) for v in parts[1:5])
                boxes.append((cls, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
        samples.append(Sample(img, boxes, set(classes), normalised=True))
    logger.info("read %d images from YOLO dataset %s", len(samples), root)
    return samples


def read_labels_json(root: Path | str, classes: tuple[str, ...] = CLASSES) -> list[Sample]:
    """Read a ``labels.json`` evaluation set (``fire`` or ``smoke`` task).

    Args:
        root: Folder with ``labels.json`` and the images it names.
        classes: Known class names; the set's ``task`` must map onto one of them.

    Returns:
        One sample per image; only the task's class is known.

    Raises:
        FileNotFoundError: ``labels.json`` is missing.
        ValueError: The task is not one of ``classes``.
    """
    root = Path(root)
    doc = json.loads((root / "labels.json").read_text())
    task = str(doc.get("task", "")).lower()
    cls = _canonical(task, classes)
    if cls is None:
        raise ValueError(f"{root}/labels.json: task {task!r} is none of {classes}")
    samples = []
    for im in doc["images"]:
        boxes: list[Box] = []
        for obj in im.get("objects", []):
            box = obj.get("box")
            if box is None:
                boxes.append((cls, None))
            else:
                x1, y1, x2, y2 = (float(v) for v in box)
                boxes.append((cls, (x1, y1, x2, y2)))
        samples.append(Sample(root / im["file"], boxes, {cls}))
    logger.info("read %d images of task %s from %s", len(samples), cls, root)
    return samples


def read_dataset(root: Path | str, classes: tuple[str, ...] = CLASSES) -> list[Sample]:
    """Read ``root`` as a YOLO dataset (``data.yaml``) or a ``labels.json`` set."""
    root = Path(root)
    if (root / "data.yaml").is_file():
        return read_yolo(root, classes)
    if (root / "labels.json").is_file():
        return read_labels_json(root, classes)
    raise FileNotFoundError(f"{root}: neither data.yaml (YOLO) nor labels.json found")


def merge(parts: list[list[Sample]]) -> list[Sample]:
    """Merge samples of several sets; the same image file (by resolved path or by file name)
    becomes one sample whose boxes and known classes are the union."""
    by_key: dict[str, Sample] = {}
    for samples in parts:
        for s in samples:
            key = s.path.name
            if key not in by_key:
                by_key[key] = Sample(s.path, list(s.boxes), set(s.known), s.normalised, s.group)
                continue
            m = by_key[key]
            if m.normalised != s.normalised and s.boxes:
                logger.warning("%s: mixing pixel and normalised boxes; keeping labels only", key)
            m.boxes.extend(s.boxes)
            m.known |= s.known
    return list(by_key.values())


def load(roots: list[Path | str], classes: tuple[str, ...] = CLASSES) -> list[Sample]:
    """Read and merge several datasets (any mix of YOLO and ``labels.json`` sets)."""
    return merge([read_dataset(r, classes) for r in roots])
