"""Mainland China plate grammar: validation and light correction (see ``citysight.plates``)."""

from __future__ import annotations

import re

from citysight.plates import normalise_plate

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
SUFFIXES = "警学港澳挂领使"
_ALNUM = "A-HJ-NP-Z0-9"
# Ordinary (7 chars, optional special suffix) or new-energy (8 chars).
PLATE_RE = re.compile(
    rf"^[{PROVINCES}][A-HJ-NP-Z](?:[{_ALNUM}]{{4}}[{_ALNUM}{SUFFIXES}]|[{_ALNUM}]{{6}})$"
)
# OCR confusions in positions where letters I/O never occur.
_TAIL_FIX = str.maketrans({"O": "0", "I": "1"})
_LETTER_FIX = {"0": "D", "1": "L", "4": "A", "8": "B", "2": "Z", "5": "S", "6": "G"}


def is_valid(text: str) -> bool:
    """True when ``text`` (already normalised) is a valid mainland plate."""
    return bool(PLATE_RE.match(text))


def correct(text: str) -> str:
    """Normalise and apply grammar-driven fixes; returns ``""`` when no valid plate results.

    Fixes: drop leading junk before a province character, map I/O to 1/0 after the
    letter, map a digit in the letter position to its look-alike letter, drop one
    trailing stray character.
    """
    t = normalise_plate(text)
    start = next((i for i, c in enumerate(t) if c in PROVINCES), -1)
    if start < 0:
        return ""
    t = t[start:]
    if len(t) >= 2 and t[1] in _LETTER_FIX:
        t = t[0] + _LETTER_FIX[t[1]] + t[2:]
    t = t[:2] + t[2:].translate(_TAIL_FIX)
    for cand in (t, t[:8], t[:7]):
        if is_valid(cand):
            return cand
    return ""
