"""Photo uploads are sniffed, bounded, fully decoded and re-encoded without metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from citysight.config import ReportsConfig
from serve_app.photos import PhotoError, clean_photo

CFG = ReportsConfig(max_photo_bytes=200_000, max_pixels=1_000_000, max_side_px=256)


def _img(w: int = 320, h: int = 200, fmt: str = "JPEG", **save: object) -> bytes:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    arr[: h // 2, : w // 4] = (255, 0, 0)  # a red block at the top left: shows rotation
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format=fmt, **save)
    return out.getvalue()


def _exif_with_gps(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {2: (20.0, 2.0, 21.0), 4: (110.0, 20.0, 0.0)}  # GPS IFD
    return exif.tobytes()


def test_exif_and_gps_are_dropped_and_orientation_applied() -> None:
    raw = _img(fmt="JPEG", exif=_exif_with_gps(orientation=6))  # 6: rotate 90° clockwise
    assert b"PhoneMaker" in raw
    out = clean_photo(raw, "image/jpeg", CFG)
    assert b"PhoneMaker" not in out.jpeg and b"Exif" not in out.jpeg
    with Image.open(io.BytesIO(out.jpeg)) as im:
        assert im.format == "JPEG" and not im.getexif()
        assert im.size == (out.width, out.height)
        assert im.height > im.width  # 320x200 turned upright: portrait
        assert max(im.size) <= CFG.max_side_px


def test_png_becomes_jpeg() -> None:
    out = clean_photo(_img(fmt="PNG"), "image/png", CFG)
    assert out.jpeg.startswith(b"\xff\xd8\xff")


def test_generic_declared_type_is_decided_by_the_bytes() -> None:
    assert clean_photo(_img(), "application/octet-stream", CFG).width == 256
    assert clean_photo(_img(), None, CFG).width == 256


def _bomb_png(w: int, h: int) -> bytes:
    out = io.BytesIO()
    Image.new("1", (w, h)).save(out, format="PNG")  # tiny file, huge image
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "ctype", "status", "needle"),
    [
        (b"", "image/jpeg", 422, "empty"),
        (b"x" * 200_001, "image/jpeg", 413, "over the limit"),
        (b"<html><script>alert(1)</script></html>", "image/jpeg", 415, "not a JPEG or PNG"),
        (b"GIF89a" + b"\x00" * 64, "image/gif", 415, "not a JPEG or PNG"),
        (_img(), "text/html", 415, "is not image/jpeg"),
        (_img(), "image/png", 415, "declared image/png but the bytes are image/jpeg"),
        (_img()[:600], "image/jpeg", 422, "corrupt or truncated"),
        (_img(800, 520)[:-60000], "image/jpeg", 422, "corrupt or truncated"),  # draft decode
        (b"\xff\xd8\xff" + bytes(range(256)) * 4, "image/jpeg", 422, "corrupt or truncated"),
        (_bomb_png(4000, 4000), "image/png", 413, "pixels is over the limit"),
        (_img(8, 8), "image/jpeg", 422, "too small"),
    ],
    ids=["empty", "huge", "html", "gif", "ctype-html", "ctype-mismatch", "truncated",
         "truncated-large",
         "garbage-after-magic", "pixel-bomb", "tiny"],
)  # fmt: skip
def test_bad_photos_are_refused_with_a_reason(
    data: bytes, ctype: str, status: int, needle: str
) -> None:
    with pytest.raises(PhotoError) as err:
        clean_photo(data, ctype, CFG, name="photos[0]")
    assert err.value.status == status
    assert needle in str(err.value) and str(err.value).startswith("photos[0]")
