"""Shared detector helpers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inference.detectors.common import read_image


def test_read_image_keeps_stored_orientation(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # left half white, as stored
    path = tmp_path / "rotated.jpg"
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # viewers rotate 90° clockwise
    im.save(path, "JPEG", quality=95, exif=exif.tobytes())

    assert cv2.imread(str(path)).shape == (40, 20, 3)  # OpenCV's default applies EXIF
    img = read_image(path)
    assert img.shape == (20, 40, 3) and img.dtype == np.uint8
    assert img[:, :20].mean() > 200 and img[:, 20:].mean() < 50


def test_read_image_gray_and_alpha_become_bgr(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "g.png"), np.full((8, 9), 7, np.uint8))
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 9, 4), 9, np.uint8))
    assert read_image(tmp_path / "g.png").shape == (8, 9, 3)
    assert read_image(tmp_path / "a.png").shape == (8, 9, 3)


@pytest.mark.parametrize("content", [None, b"", b"not an image at all"])
def test_read_image_unreadable_names_the_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "broken.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        read_image(path)
