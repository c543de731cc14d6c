"""Plate text normalisation: the one form every layer stores, matches and queries plates in."""

from __future__ import annotations

import re

# Separators seen in OCR output and in typed queries: spaces, hyphens, underscores, dots,
# middle dots and bullets (琼A·12345), colons and commas (ASCII and full-width), quotes, bars.
_SEPARATORS = re.compile(r"[\s\-_.·•:：,，'\"|]+")


def normalise_plate(text: object) -> str:
    """Upper case without separators (``"ab-12 3"`` → ``"AB123"``, ``"琼A·123"`` → ``"琼A123"``)."""
    return _SEPARATORS.sub("", str(text)).upper()


#: What a plate reader reports for a plate it cannot read with confidence: no text. An
#: unreadable plate is never stored as a read, matched against a hotlist or alerted on.
UNREADABLE = ""


def is_readable(text: object) -> bool:
    """True when ``text`` names a plate (not :data:`UNREADABLE`, ``None`` or separators)."""
    return text is not None and normalise_plate(text) != UNREADABLE
