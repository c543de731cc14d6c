"""Tiny fire/smoke ``labels.json`` sets for the training tests (not a test module)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def write_image(path: Path, bgr: tuple[int, int, int], w: int = 40, h: int = 20) -> None:
    """Write a uniform BGR image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), bgr, np.uint8))


def make_sets(root: Path) -> tuple[Path, Path]:
    """A tiny fire set and smoke set sharing one negative, as in ../shared/data/eval."""
    fire, smoke = root / "fire", root / "smoke"
    write_image(fire / "images" / "camA_f0001.jpg", (0, 0, 255))
    write_image(fire / "images" / "camA_f0002.jpg", (0, 0, 255))
    write_image(fire / "images" / "neg_street_01.jpg", (90, 90, 90))
    write_image(smoke / "images" / "fog_clip-3.jpg", (200, 200, 200))
    write_image(smoke / "images" / "neg_street_01.jpg", (90, 90, 90))
    (fire / "labels.json").write_text(
        json.dumps(
            {
                "task": "fire",
                "images": [
                    {"file": "images/camA_f0001.jpg", "objects": [{"box": [10, 5, 30, 15]}]},
                    {"file": "images/camA_f0002.jpg", "objects": [{"box": None}]},
                    {"file": "images/neg_street_01.jpg", "objects": []},
                ],
            }
        )
    )
    (smoke / "labels.json").write_text(
        json.dumps(
            {
                "task": "smoke",
                "images": [
                    {"file": "images/fog_clip-3.jpg", "objects": [{"box": [0, 0, 40, 20]}]},
                    {"file": "images/neg_street_01.jpg", "objects": []},
                ],
            }
        )
    )
    return fire, smoke
