"""Run detector tiers over labelled sets and score them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.eval.dataset import LabelledImage, load_task
from benchmarks.eval.scoring import Counts, image_level, match_boxes
from citysight.contracts import ObjectClass
from citysight.plates import normalise_plate
from inference.detectors.base import DetectorBackend, load_detector
from inference.detectors.common import read_image
from inference.detectors.ocr import TextRecognizer
from inference.detectors.plate import MIN_CHAR_CONF, read_plate

logger = logging.getLogger(__name__)

#: task -> detector that serves it
TASK_DETECTOR = {
    "faces": "face",
    "plates": "plate",
    "plate_text": "plate",
    "fire": "fire_smoke",
    "smoke": "fire_smoke",
}
BOX_IOU = 0.5
FIRE_BOX_IOU = 0.3


def _frames(
    images: list[LabelledImage], skipped: list[str]
) -> Iterator[tuple[int, LabelledImage, npt.NDArray[np.uint8]]]:
    """Index, labels and pixels of each readable image, as stored (no EXIF rotation).

    An unreadable image (missing, truncated, not an image) is logged, named in ``skipped``
    and left out of the scores, so one bad file never costs the whole task.
    """
    for i, im in enumerate(images):
        try:
            img = read_image(im.path)
        except ValueError as exc:
            logger.warning("eval: skipping an image: %s", exc)
            skipped.append(str(im.path))
            continue
        yield i, im, img


def eval_boxes(
    det: DetectorBackend,
    images: list[LabelledImage],
    cls: ObjectClass,
    with_text: bool,
    skipped: list[str],
) -> dict[str, Any]:
    """Box-level scoring at IoU 0.5 (faces, plates); plate text when ``with_text``."""
    total = Counts()
    for i, im, img in _frames(images, skipped):
        out = det.detect([img], [f"eval-{i}"])[0]
        keep = out.class_ids == int(cls)
        boxes, scores = out.boxes[keep], out.scores[keep]
        gts = [o for o in im.objects if o.box is not None]
        c, assign = match_boxes(
            boxes,
            scores,
            [o.box for o in gts if o.box is not None],  # all of them (filtered above)
            [o.difficult for o in gts],
            BOX_IOU,
        )
        if with_text:
            texts = [t for t, k in zip(out.extra.get("plate_text", []), keep, strict=False) if k]
            for o, d in zip(gts, assign, strict=True):
                if o.text is None or o.difficult:
                    continue
                c.text_total += 1
                c.text_ok += d >= 0 and normalise_plate(texts[d] or "") == normalise_plate(o.text)
        total.add(c)
    res = total.metrics()
    if with_text:
        res["text_exact"] = round(total.text_ok / total.text_total, 4) if total.text_total else 0.0
        res["text_labelled"] = total.text_total
    return res


def eval_plate_text(images: list[LabelledImage], skipped: list[str]) -> dict[str, Any]:
    """Read every rectified crop; ``text_exact`` = exact readings / crops.

    ``precision`` is exact / crops given a reading, ``recall`` exact / crops. A crop is
    either read exactly, read wrong (``wrong_rate``: a wrong plate reported) or
    unreadable (``unreadable_rate``: no plate reported, never a guess).
    """
    rec = TextRecognizer()
    ok = read = total = 0
    for _, im, img in _frames(
        [im for im in images if any(o.text and not o.difficult for o in im.objects)], skipped
    ):
        labelled = [o for o in im.objects if o.text and not o.difficult]
        text, _ = read_plate(rec, img)
        total += 1
        read += bool(text)
        ok += bool(text) and normalise_plate(text) == normalise_plate(labelled[0].text or "")
    c = Counts(matched=ok, detections=read, labelled=total)
    res = c.metrics()
    res["text_exact"] = round(ok / total, 4) if total else 0.0
    res["wrong_rate"] = round((read - ok) / total, 4) if total else 0.0
    res["unreadable_rate"] = round((total - read) / total, 4) if total else 0.0
    res["min_char_conf"] = MIN_CHAR_CONF
    return res


def eval_image_level(
    det: DetectorBackend, images: list[LabelledImage], cls: ObjectClass, skipped: list[str]
) -> dict[str, Any]:
    """Image-level P/R/F1; ``box_f1`` at IoU 0.3 over images whose boxes are all known.

    Each image is a fresh camera: still images carry no motion history.
    """
    pred, truth = [], []
    boxes_total = Counts()
    for i, im, img in _frames(images, skipped):
        out = det.detect([img], [f"eval-{i}"])[0]
        keep = out.class_ids == int(cls)
        pred.append(bool(keep.any()))
        truth.append(bool(im.objects))
        if all(o.box is not None for o in im.objects):
            c, _ = match_boxes(
                out.boxes[keep],
                out.scores[keep],
                [o.box for o in im.objects if o.box is not None],  # all of them (checked)
                [o.difficult for o in im.objects],
                FIRE_BOX_IOU,
            )
            boxes_total.add(c)
    res = image_level(pred, truth)
    res["box_f1"] = boxes_total.metrics()["f1"]
    return res


def run_task(
    root: Path, task: str, models_dir: Path, tier: str | None, limit: int | None = None
) -> dict[str, Any]:
    """Score one task with one tier (``None``: the strongest that loads)."""
    images = load_task(root, task, limit)
    skipped: list[str] = []
    t0 = time.perf_counter()
    load_s = 0.0
    if task == "plate_text":
        res = eval_plate_text(images, skipped)
        res["tier"] = "ppocrv4_rec"
    else:
        det = load_detector(TASK_DETECTOR[task], models_dir, [tier] if tier else None)
        load_s = time.perf_counter() - t0
        if task == "faces":
            res = eval_boxes(det, images, ObjectClass.FACE, False, skipped)
        elif task == "plates":
            res = eval_boxes(det, images, ObjectClass.PLATE, True, skipped)
        else:
            cls = ObjectClass.FIRE if task == "fire" else ObjectClass.SMOKE
            res = eval_image_level(det, images, cls, skipped)
        res["tier"] = det.tier
    res["images"] = len(images) - len(skipped)
    if skipped:
        task_dir = root / task
        res["skipped_images"] = [
            str(Path(p).relative_to(task_dir)) if Path(p).is_relative_to(task_dir) else p
            for p in skipped
        ]
    seconds = time.perf_counter() - t0
    res["seconds"] = round(seconds, 2)
    # Throughput of the scoring loop on this CPU (reading, detecting, matching; the model
    # load left out), one image at a time as a camera sends them.
    res["images_per_s"] = round(res["images"] / (seconds - load_s), 1) if seconds > load_s else None
    return res
