"""Plate hotlist matching: exact, and tolerant of common OCR confusions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from citysight.config import HotlistEntry
from citysight.plates import is_readable, normalise_plate

# Characters OCR mixes up, mapped to one representative per confusion class.
CONFUSIONS: Final = {
    "O": "0", "D": "0", "Q": "0",
    "B": "8",
    "Z": "2",
    "I": "1", "L": "1",
    "S": "5",
    "G": "6",
}  # fmt: skip
_TABLE: Final = str.maketrans(CONFUSIONS)


def canonical(plate: str) -> str:
    """Plate text with every confusable character replaced by its class representative."""
    return normalise_plate(plate).translate(_TABLE)


@dataclass(frozen=True, slots=True)
class HotlistHit:
    """A plate read that matched a hotlist entry."""

    entry: HotlistEntry
    read: str
    exact: bool


class Hotlist:
    """Index of hotlist entries by exact and canonical text."""

    def __init__(self, entries: list[HotlistEntry]) -> None:
        self.exact = {normalise_plate(e.plate): e for e in entries}
        self.tolerant: dict[str, HotlistEntry] = {}
        for e in entries:
            self.tolerant.setdefault(canonical(e.plate), e)

    def __len__(self) -> int:
        return len(self.exact)

    def match(self, read: str) -> HotlistHit | None:
        """The entry a plate read matches, exact matches first."""
        if not is_readable(read):
            return None  # an unreadable plate never matches, not even tolerantly
        p = normalise_plate(read)
        if p in self.exact:
            return HotlistHit(self.exact[p], p, True)
        e = self.tolerant.get(canonical(p))
        return HotlistHit(e, p, False) if e is not None else None
