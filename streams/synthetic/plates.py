"""Chinese mainland licence plates (blue, small-car type) drawn with Pillow.

A blue plate is 440 x 140 mm: a province character and a letter, a separator dot, then
five letters or digits, white on blue with a white border line (GA 36-2018). The plate
is drawn once at 2 px/mm and scaled down per frame with area interpolation.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from streams.synthetic.drawing import Image

logger = logging.getLogger(__name__)

#: Plate texts shown in the ``plate`` scene, in order of appearance. The first one is
#: on the demo hotlist.
DEMO_PLATES: tuple[str, ...] = ("琼A12345", "琼B6789D")

#: The 31 mainland province abbreviations used as a plate's first character.
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

#: Grammar of an ordinary (blue, 7-character) plate; I and O are never used.
PLATE_PATTERN = re.compile(rf"^[{PROVINCES}][A-HJ-NP-Z][A-HJ-NP-Z0-9]{{5}}$")

#: Plate blue, RGB.
PLATE_BLUE = (0, 60, 170)
PLATE_WHITE = (245, 245, 245)
PLATE_MM = (440, 140)
_PX_PER_MM = 2

# Preferred fonts, best first; any other font with CJK glyphs is found with fc-list.
_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Black.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Medium.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)


class CJKFontNotFoundError(RuntimeError):
    """No installed font can draw Chinese plate characters."""


def format_plate(text: str) -> str:
    """Returns the display form of a plate, e.g. ``琼A12345`` -> ``琼A·12345``."""
    return f"{text[:2]}·{text[2:]}"


def _has_glyphs(font: ImageFont.FreeTypeFont, chars: str) -> bool:
    # A missing glyph renders as the font's .notdef box, identical for every missing
    # code point; compare against a private-use code point that no font defines.
    missing = bytes(font.getmask("\U000f0000"))
    return all(bytes(font.getmask(c)) != missing for c in chars)


def _fc_list_files() -> list[str]:
    if shutil.which("fc-list") is None:
        return []
    try:
        out = subprocess.run(
            ["fc-list", ":lang=zh", "file"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.split(":")[0].strip() for line in out.splitlines() if line})


@functools.cache
def find_cjk_font(size: int = 200) -> ImageFont.FreeTypeFont:
    """Finds a font that can draw plate characters, preferring Noto Sans CJK SC Bold.

    Args:
        size: Font size in pixels.

    Returns:
        The loaded font.

    Raises:
        CJKFontNotFoundError: No installed font has the glyphs.
    """
    probe = "琼京粤A8"
    for path in [*_FONT_CANDIDATES, *_fc_list_files()]:
        if not Path(path).is_file():
            continue
        faces: list[ImageFont.FreeTypeFont] = []
        for index in range(16):
            try:
                faces.append(ImageFont.truetype(path, size, index=index))
            except OSError:
                break
        # In a .ttc collection, prefer the Simplified Chinese face (SC) glyph shapes.
        faces.sort(key=lambda f: " SC" not in " ".join(map(str, f.getname())))
        for face in faces:
            if _has_glyphs(face, probe):
                logger.debug("plate font: %s %s", path, face.getname())
                return face
    raise CJKFontNotFoundError(
        "no font with Chinese glyphs found; install the Debian package "
        "'fonts-noto-cjk' (apt-get install fonts-noto-cjk)"
    )


def _glyph(ch: str, box_w: int, box_h: int) -> PILImage.Image:
    """Renders one character as an L-mode mask fitted into a ``box_w x box_h`` cell."""
    font = find_cjk_font()
    x1, y1, x2, y2 = (round(v) for v in font.getbbox(ch))
    canvas = PILImage.new("L", (x2 - x1 + 4, y2 - y1 + 4), 0)
    ImageDraw.Draw(canvas).text((2 - x1, 2 - y1), ch, font=font, fill=255)
    gw, gh = canvas.size
    # Plate characters are tall and narrow: fill the cell height, keep the glyph's
    # own proportions unless it is wider than the cell (then squeeze it, as the
    # official plate font does for the province character).
    w = min(box_w, round(gw * box_h / gh * 0.92))
    return canvas.resize((max(w, 1), box_h), PILImage.Resampling.LANCZOS)


@functools.cache
def plate_master(text: str) -> Image:
    """Renders plate ``text`` at 2 px/mm (880 x 280) as an RGB array.

    Args:
        text: Seven plate characters without separator, e.g. ``琼A12345``.

    Returns:
        The plate image.

    Raises:
        ValueError: ``text`` is not an ordinary plate.
    """
    if not PLATE_PATTERN.match(text):
        raise ValueError(f"not an ordinary blue plate: {text!r}")
    s = _PX_PER_MM
    w, h = PLATE_MM[0] * s, PLATE_MM[1] * s
    img = PILImage.new("RGB", (w, h), PLATE_BLUE)
    draw = ImageDraw.Draw(img)
    # Slight shading: plates are pressed metal and catch light at the top.
    for y in range(h):
        k = 1.08 - 0.16 * y / h
        draw.line([(0, y), (w, y)], fill=tuple(min(255, round(c * k)) for c in PLATE_BLUE))
    draw.rounded_rectangle(
        (3 * s, 3 * s, w - 3 * s, h - 3 * s),
        radius=8 * s,
        outline=PLATE_WHITE,
        width=round(2.5 * s),
    )
    box_w, box_h = 45 * s, 90 * s
    top = 25 * s
    lefts = [15.5, 72.5, 151.5, 208.5, 265.5, 322.5, 379.5]
    white = PILImage.new("RGB", (box_w, box_h), PLATE_WHITE)
    for ch, left in zip(text, lefts, strict=True):
        g = _glyph(ch, box_w, box_h)
        x = round(left * s + (box_w - g.size[0]) / 2)
        img.paste(white.crop((0, 0, *g.size)), (x, top), g)
    r = 5 * s
    cx, cy = round(134.5 * s), h // 2
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=PLATE_WHITE)
    return np.asarray(img, dtype=np.uint8).copy()


def plate_image(text: str, width: int) -> Image:
    """Returns plate ``text`` scaled to ``width`` pixels (aspect 440:140).

    Args:
        text: Seven plate characters, e.g. ``琼A12345``.
        width: Output width in pixels.

    Returns:
        The plate as an RGB array.
    """
    height = max(1, round(width * PLATE_MM[1] / PLATE_MM[0]))
    out = cv2.resize(plate_master(text), (width, height), interpolation=cv2.INTER_AREA)
    return np.asarray(out, dtype=np.uint8)


# -- other plate kinds (GA 36-2018), for reading tests and the synthetic plate benchmark --

#: kind -> (plate size in mm, grammar). ``blue`` is :func:`plate_master`'s plate.
PLATE_KINDS: dict[str, tuple[tuple[int, int], re.Pattern[str]]] = {
    "blue": (PLATE_MM, PLATE_PATTERN),
    # Green new-energy, small car: D/F, a letter or digit, four digits (8 characters).
    "green_nev": ((480, 140), re.compile(rf"^[{PROVINCES}][A-HJ-NP-Z][DF][A-HJ-NP-Z0-9]\d{{4}}$")),
    # Yellow large vehicle, double layer: province + letter on top, five below.
    "yellow_double": ((440, 220), PLATE_PATTERN),
}
_BLACK = (20, 20, 20)
_YELLOW = (250, 190, 20)


def _paste_text(
    img: PILImage.Image,
    text: str,
    lefts: list[float],
    top: float,
    box: tuple[float, float],
    colour: tuple[int, int, int],
) -> None:
    """Draws ``text``, one character per ``lefts`` cell (mm), at 2 px/mm."""
    s = _PX_PER_MM
    box_w, box_h = round(box[0] * s), round(box[1] * s)
    ink = PILImage.new("RGB", (box_w, box_h), colour)
    for ch, left in zip(text, lefts, strict=True):
        g = _glyph(ch, box_w, box_h)
        x = round(left * s + (box_w - g.size[0]) / 2)
        img.paste(ink.crop((0, 0, *g.size)), (x, round(top * s)), g)


@functools.cache
def plate_master_kind(text: str, kind: str) -> Image:
    """Renders plate ``text`` of ``kind`` (a :data:`PLATE_KINDS` key) at 2 px/mm.

    Raises:
        ValueError: unknown kind, or ``text`` is not a plate of that kind.
    """
    if kind not in PLATE_KINDS:
        raise ValueError(f"unknown plate kind {kind!r}; known: {sorted(PLATE_KINDS)}")
    (wmm, hmm), pattern = PLATE_KINDS[kind]
    if not pattern.match(text):
        raise ValueError(f"not a {kind} plate: {text!r}")
    if kind == "blue":
        return plate_master(text)
    s = _PX_PER_MM
    w, h = wmm * s, hmm * s
    img = PILImage.new("RGB", (w, h), _YELLOW)
    draw = ImageDraw.Draw(img)
    if kind == "green_nev":
        # Small NEV plates fade from white-green at the top to green at the bottom.
        top_c, bot_c = np.array([235, 250, 235]), np.array([60, 190, 90])
        for y in range(h):
            c = top_c + (bot_c - top_c) * y / h
            draw.line([(0, y), (w, y)], fill=tuple(int(v) for v in c))
        draw.rounded_rectangle(
            (2 * s, 2 * s, w - 2 * s, h - 2 * s), radius=8 * s, outline=_BLACK, width=2 * s
        )
        # 8 cells of 43 × 90 mm: 2, a gap with the dot, then 6.
        lefts = [15.5, 67.5] + [143.5 + 53 * i for i in range(6)]
        _paste_text(img, text, lefts, 25, (43, 90), _BLACK)
        cx, cy, r = round(129 * s), h // 2, 4 * s
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_BLACK)
    else:
        draw.rounded_rectangle(
            (3 * s, 3 * s, w - 3 * s, h - 3 * s), radius=8 * s, outline=_BLACK, width=2 * s
        )
        # Top row 80 × 60 mm cells centred; bottom row five 65 × 110 mm cells.
        _paste_text(img, text[:2], [110, 250], 15, (80, 60), _BLACK)
        _paste_text(img, text[2:], [27.5 + 80 * i for i in range(5)], 95, (65, 110), _BLACK)
        cx, cy, r = 220 * s, 45 * s, 5 * s
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_BLACK)
    return np.asarray(img, dtype=np.uint8).copy()


def plate_image_kind(text: str, kind: str, width: int) -> Image:
    """Returns plate ``text`` of ``kind`` scaled to ``width`` pixels (RGB)."""
    (wmm, hmm), _ = PLATE_KINDS.get(kind, (PLATE_MM, PLATE_PATTERN))
    master = plate_master_kind(text, kind)
    height = max(1, round(width * hmm / wmm))
    return np.asarray(cv2.resize(master, (width, height), interpolation=cv2.INTER_AREA), np.uint8)
