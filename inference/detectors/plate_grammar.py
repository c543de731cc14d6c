"""Mainland China plate grammar per plate type: validation and light correction.

The types follow GA 36-2018 (motor vehicle plates of the PRC); text is the normalised form
of ``citysight.plates`` (no separators, upper case). Military and armed-police plates
follow other standards and are not read (see docs/detectors.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from citysight.plates import normalise_plate

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
SUFFIXES = "警学港澳挂领使"
#: Letters used on plates: A-Z without I and O (GA 36-2018 never issues them).
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
DIGITS = "0123456789"
_L = "A-HJ-NP-Z"
_AN = f"{_L}0-9"
_HEAD = f"[{PROVINCES}][{_L}]"

#: plate type -> pattern over the whole normalised text. Order matters only for
#: :func:`plate_type` (the first that matches names the type; they do not overlap).
PATTERNS: dict[str, re.Pattern[str]] = {
    # Blue (small) and yellow (large, single or double layer): 5 letters/digits.
    "ordinary": re.compile(rf"^{_HEAD}[{_AN}]{{5}}$"),
    # Green new-energy, small: D (electric) or F (other) first, a letter or digit, 4 digits.
    "nev_small": re.compile(rf"^{_HEAD}[DF][{_AN}][0-9]{{4}}$"),
    # Green/yellow new-energy, large: 5 digits, then D or F.
    "nev_large": re.compile(rf"^{_HEAD}[0-9]{{5}}[DF]$"),
    "police": re.compile(rf"^{_HEAD}[{_AN}]{{4}}警$"),
    "coach": re.compile(rf"^{_HEAD}[{_AN}]{{4}}学$"),
    "trailer": re.compile(rf"^{_HEAD}[{_AN}]{{4}}挂$"),
    "consulate": re.compile(rf"^{_HEAD}[{_AN}]{{4}}领$"),
    # Hong Kong / Macao cross-border plates are issued in Guangdong, letter Z.
    "hk_macao": re.compile(rf"^粤Z[{_AN}]{{4}}[港澳]$"),
    # Embassy plates: 6 digits (mission code + serial) and 使, no province.
    "embassy": re.compile(r"^[0-9]{6}使$"),
}

# Look-alikes, applied only where the grammar rules the other class out.
_TO_DIGIT = {"O": "0", "Q": "0", "D": "0", "U": "0", "I": "1", "L": "1", "Z": "2", "S": "5",
             "B": "8", "G": "6", "T": "7", "A": "4"}  # fmt: skip
_TO_LETTER = {"0": "D", "1": "L", "4": "A", "8": "B", "2": "Z", "5": "S", "6": "G", "7": "T"}
# I and O never occur anywhere after the province, so they are always 1 and 0.
_NO_IO = str.maketrans({"O": "0", "I": "1"})
_DIGIT_TABLE = str.maketrans("".join(_TO_DIGIT), "".join(_TO_DIGIT.values()))


@dataclass(frozen=True)
class Reading:
    """A plate reading that passed the grammar.

    Attributes:
        text: The normalised plate.
        plate_type: Key of :data:`PATTERNS`.
        conf: Per-character confidences aligned with ``text`` (1.0 where unknown).
    """

    text: str
    plate_type: str
    conf: tuple[float, ...]

    @property
    def min_conf(self) -> float:
        """The least confident character (what a rejection threshold looks at)."""
        return min(self.conf) if self.conf else 0.0


def plate_type(text: str) -> str | None:
    """The type of a normalised plate, or ``None`` when no type's grammar accepts it."""
    return next((k for k, p in PATTERNS.items() if p.match(text)), None)


def is_valid(text: str) -> bool:
    """True when ``text`` (already normalised) is a valid mainland plate of any type."""
    return plate_type(text) is not None


def _fix_nev(t: str) -> list[str]:
    """NEV candidates of an 8-character text: look-alikes mapped where a class is forced."""
    out = []
    # Small: position 3 is D/F (0 read for D), positions 5-8 digits.
    s = list(t)
    s[2] = {"0": "D", "E": "F", "P": "F"}.get(s[2], s[2])
    s[4:] = [_TO_DIGIT.get(c, c) for c in s[4:]]
    out.append("".join(s))
    # Large: positions 3-7 digits (a D there is a 0), position 8 D/F.
    g = [*t[:2], *(_TO_DIGIT.get(c, c) for c in t[2:7]), {"0": "D"}.get(t[7], t[7])]
    out.append("".join(g))
    return out


def candidates(text: str) -> list[tuple[str, int]]:
    """Grammar-fixed candidate texts with the offset of their first character in ``text``."""
    t = normalise_plate(text)
    if re.match(r"^[0-9A-Z]{6}使$", t):  # embassy: no province, digits only
        return [(t[:6].translate(_DIGIT_TABLE) + "使", 0)]
    start = next((i for i, c in enumerate(t) if c in PROVINCES), -1)
    if start < 0:
        return []
    t = t[start:]
    # One stray trailing character (a border or bolt read as a glyph) is dropped only
    # when it cannot be a plate character: dropping a real one turns an unreadable
    # plate into a wrong one (an 8-character NEV into a 7-character ordinary plate).
    if len(t) in (8, 9) and t[-1] not in LETTERS + DIGITS + SUFFIXES + "IO":
        t = t[:-1]
    if len(t) >= 2 and t[1] in _TO_LETTER:
        t = t[0] + _TO_LETTER[t[1]] + t[2:]
    t = t[:2] + t[2:].translate(_NO_IO)
    cands = [t]
    if len(t) == 8:
        cands += _fix_nev(t)
    return [(c, start) for c in cands]


def correct_reading(text: str, conf: Sequence[float] | None = None) -> Reading | None:
    """Normalise, apply grammar-driven fixes and check the grammar of each type.

    Fixes: drop leading junk before a province character, map I/O to 1/0 after the
    letter, a digit in the letter position to its look-alike letter, look-alikes in the
    digit-only positions of new-energy plates, and one trailing stray non-plate character.

    Args:
        text: Raw recogniser output.
        conf: Per-character confidences of ``text`` after :func:`normalise_plate`
            (aligned with the normalised text); ``None`` when unknown.

    Returns:
        The reading, or ``None`` when no valid plate results (unreadable).
    """
    for cand, start in candidates(text):
        kind = plate_type(cand)
        if kind is None:
            continue
        if conf is None:
            cs: tuple[float, ...] = (1.0,) * len(cand)
        else:
            cs = tuple(conf[start : start + len(cand)])
            if len(cs) < len(cand):  # confidences missing (not aligned): unknown
                cs = cs + (0.0,) * (len(cand) - len(cs))
        return Reading(cand, kind, cs)
    return None


def correct(text: str) -> str:
    """:func:`correct_reading`'s text, ``""`` when no valid plate results."""
    r = correct_reading(text)
    return r.text if r else ""
