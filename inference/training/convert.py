"""Convert ``labels.json`` fire/smoke sets (and YOLO sets) into one YOLO-format dataset.

Usage::

    python -m inference.training.convert --src ../shared/data/eval/fire \\
        --src ../shared/data/eval/smoke --out /tmp/fire_smoke_yolo [--link]

Writes ``images/``, ``labels/`` (``class cx cy w h`` normalised lines) and ``data.yaml``
(``names: [fire, smoke]``). Images found in several sources (the shared negatives) are
written once with the union of their labels. An object whose box is ``null`` (image-level
label only) becomes a whole-image box, and its file is listed under ``image_level`` in
``data.yaml`` so a detector trainer can leave it out.

YOLO format cannot say "unknown": an image that only a ``smoke`` set labels is written as
having no fire. For training the classifier, pass the ``labels.json`` folders to
``train_cls`` directly, which keeps that distinction.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

import yaml

from inference.detectors.common import read_image
from inference.training.datasets import CLASSES, Sample, load

logger = logging.getLogger(__name__)


def _yolo_lines(s: Sample, classes: tuple[str, ...]) -> tuple[list[str], bool]:
    """YOLO label lines of a sample, and whether an image-level (null) box was expanded."""
    lines, expanded = [], False
    size: tuple[int, int] | None = None
    for cls, box in s.boxes:
        if box is None:
            expanded = True
            x1, y1, x2, y2 = 0.0, 0.0, 1.0, 1.0
        elif s.normalised:
            x1, y1, x2, y2 = box
        else:
            if size is None:
                im = read_image(s.path)
                size = (im.shape[1], im.shape[0])
            w, h = size
            x1, y1, x2, y2 = box[0] / w, box[1] / h, box[2] / w, box[3] / h
        x1, y1 = max(0.0, min(1.0, x1)), max(0.0, min(1.0, y1))
        x2, y2 = max(0.0, min(1.0, x2)), max(0.0, min(1.0, y2))
        if x2 <= x1 or y2 <= y1:
            logger.warning("%s: empty %s box %s skipped", s.path, cls, box)
            continue
        cx, cy, bw, bh = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        lines.append(f"{classes.index(cls)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return lines, expanded


def convert(
    sources: list[Path | str],
    out: Path | str,
    classes: tuple[str, ...] = CLASSES,
    link: bool = False,
) -> Path:
    """Write one YOLO-format dataset from ``sources``.

    Args:
        sources: ``labels.json`` set folders and/or YOLO dataset folders.
        out: Output folder (created; existing files with the same names are replaced).
        classes: Class names, in YOLO class-id order.
        link: Symlink images instead of copying them.

    Returns:
        The path of the written ``data.yaml``.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    samples = load(list(sources), classes)
    image_level = []
    for s in samples:
        dst = out / "images" / s.path.name
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if link:
            os.symlink(s.path.resolve(), dst)
        else:
            shutil.copyfile(s.path, dst)
        lines, expanded = _yolo_lines(s, classes)
        if expanded:
            image_level.append(s.path.name)
        text = "\n".join(lines) + ("\n" if lines else "")
        (out / "labels" / s.path.with_suffix(".txt").name).write_text(text)
    meta = {
        "path": str(out.resolve()),
        "train": "images",
        "val": "images",
        "nc": len(classes),
        "names": list(classes),
        "image_level": sorted(image_level),
        "sources": [str(Path(s)) for s in sources],
    }
    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(meta, sort_keys=False))
    logger.info(
        "wrote %d images (%d with image-level labels only) to %s",
        len(samples),
        len(image_level),
        out,
    )
    return data_yaml


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", action="append", required=True, help="labels.json or YOLO folder")
    ap.add_argument("--out", required=True, help="output YOLO dataset folder")
    ap.add_argument("--classes", default=",".join(CLASSES), help="comma-separated class names")
    ap.add_argument("--link", action="store_true", help="symlink images instead of copying")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = convert(args.src, args.out, tuple(args.classes.split(",")), args.link)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
