"""Photo uploads (field reports, feedback): checked, decoded and re-encoded before storage.

What a phone sends is never stored as sent. :func:`clean_photo` sniffs the bytes (JPEG or
PNG, whatever the declared content type says), refuses images whose header announces more
pixels than ``reports.max_pixels`` before decoding them (decompression bombs), decodes the
whole image (a truncated or corrupt file is refused), applies the EXIF orientation, and
re-encodes it as a JPEG without any metadata (EXIF, GPS, XMP, ICC, comments are dropped),
its longer side at most ``reports.max_side_px``. Faces are blurred later, when a photo is
served without ``evidence:unredacted`` (:mod:`citysight.redaction`), like every snapshot.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from citysight.config import ReportsConfig

logger = logging.getLogger(__name__)

JPEG_MAGIC: Final = b"\xff\xd8\xff"
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
ACCEPTED_TYPES: Final = frozenset({"image/jpeg", "image/jpg", "image/pjpeg", "image/png"})
GENERIC_TYPES: Final = frozenset({"", "application/octet-stream"})
"""Declared types that say nothing (some phone browsers send these): the bytes decide."""
MIN_SIDE_PX: Final = 16


class PhotoError(ValueError):
    """A photo that is refused; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class CleanPhoto:
    """A photo ready to store: metadata-free JPEG bytes and its size."""

    jpeg: bytes
    width: int
    height: int


def sniff(data: bytes) -> str | None:
    """``image/jpeg`` or ``image/png`` from the first bytes, else ``None``."""
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return "image/png"
    return None


def clean_photo(
    data: bytes, declared_type: str | None, cfg: ReportsConfig, *, name: str = "photo"
) -> CleanPhoto:
    """Check and re-encode one uploaded photo.

    Args:
        data: The uploaded bytes.
        declared_type: The part's Content-Type (``None`` when absent).
        cfg: Limits (``reports``).
        name: How the photo is named in error messages (``photos[1]``).

    Raises:
        PhotoError: empty (422), too large (413), not a JPEG/PNG or a type that disagrees
            with the bytes (415), too many pixels (413), corrupt or truncated (422).
    """
    if not data:
        raise PhotoError(f"{name}: empty file")
    if len(data) > cfg.max_photo_bytes:
        raise PhotoError(
            f"{name}: {len(data)} bytes is over the limit of {cfg.max_photo_bytes} bytes", 413
        )
    declared = (declared_type or "").split(";")[0].strip().lower()
    kind = sniff(data)
    if kind is None:
        raise PhotoError(f"{name}: not a JPEG or PNG image (content sniffed)", 415)
    if declared not in GENERIC_TYPES:
        if declared not in ACCEPTED_TYPES:
            raise PhotoError(
                f"{name}: content type {declared!r} is not image/jpeg or image/png", 415
            )
        if ("png" in declared) != (kind == "image/png"):
            raise PhotoError(f"{name}: declared {declared} but the bytes are {kind}", 415)
    try:
        with warnings.catch_warnings():
            # PIL warns (and beyond twice its limit raises) on huge images: our own limit,
            # checked from the header before any decoding, is the one that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in ("JPEG", "PNG"):
                raise PhotoError(f"{name}: not a JPEG or PNG image", 415)
            w, h = img.size
            if w * h > cfg.max_pixels:
                raise PhotoError(
                    f"{name}: {w}x{h} pixels is over the limit of {cfg.max_pixels} pixels", 413
                )
            if min(w, h) < MIN_SIDE_PX:
                raise PhotoError(f"{name}: {w}x{h} is too small to show anything")
            if img.format == "JPEG":
                # Decode straight at the smallest DCT scale still at least the stored size
                # (a photo twice the stored size decodes about 4x faster); every byte of
                # the file is still decoded, so truncation and corruption still fail.
                scale = min(1.0, cfg.max_side_px / max(w, h))
                img.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
            img.load()  # the whole image: truncated or corrupt files fail here
            upright = ImageOps.exif_transpose(img) or img
            rgb = upright.convert("RGB")
    except PhotoError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise PhotoError(f"{name}: corrupt or truncated image ({type(exc).__name__})") from None
    rgb.thumbnail((cfg.max_side_px, cfg.max_side_px))
    out = io.BytesIO()
    # No exif=, no icc_profile=: the saved file carries no metadata at all.
    rgb.save(out, format="JPEG", quality=88, optimize=False)
    return CleanPhoto(out.getvalue(), rgb.width, rgb.height)
