"""Labelled sets in the ``labels.json`` format of ../shared/data/README.md."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

TASKS = ("faces", "plates", "plate_text", "fire", "smoke")


class DatasetError(ValueError):
    """A labels file is missing or malformed."""


@dataclass(frozen=True, slots=True)
class LabelledObject:
    """One labelled object: box (``None`` when only the image-level label is known)."""

    box: tuple[float, float, float, float] | None
    text: str | None = None
    difficult: bool = False


@dataclass(frozen=True, slots=True)
class LabelledImage:
    """An image and its objects (none: a negative)."""

    path: Path
    objects: tuple[LabelledObject, ...] = field(default_factory=tuple)


def load_task(root: Path, task: str, limit: int | None = None) -> list[LabelledImage]:
    """Read ``root/task/labels.json``.

    Args:
        root: The eval directory (one folder per task).
        task: Task folder name.
        limit: Keep at most this many images, evenly spaced (a fixed, deterministic subset).

    Raises:
        DatasetError: the file is missing or malformed.
    """
    path = root / task / "labels.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        images = []
        for im in doc["images"]:
            objs = tuple(
                LabelledObject(
                    # labels.json boxes are x1, y1, x2, y2
                    box=cast("tuple[float, float, float, float]", tuple(float(v) for v in o["box"]))
                    if o.get("box") is not None
                    else None,
                    text=o.get("text"),
                    difficult=bool(o.get("difficult", False)),
                )
                for o in im.get("objects", [])
            )
            images.append(LabelledImage(path.parent / im["file"], objs))
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: missing") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: malformed labels ({exc})") from exc
    images = [LabelledImage(im.path.resolve(), im.objects) for im in images]
    if limit is not None and len(images) > limit:
        step = len(images) / limit
        images = [images[int(i * step)] for i in range(limit)]
    return images


def available_tasks(root: Path) -> list[str]:
    """Tasks of :data:`TASKS` that have a labels file under ``root``."""
    return [t for t in TASKS if (root / t / "labels.json").is_file()]
