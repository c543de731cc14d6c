"""The one plate normaliser (stored reads, hotlist matching, API queries, OCR output)."""

from __future__ import annotations

import pytest

from citysight.plates import normalise_plate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ab-12 3", "AB123"),
        ("琼A·12345", "琼A12345"),
        ("琼A•12345", "琼A12345"),
        ("粤B_123.45", "粤B12345"),
        ("京A:12345", "京A12345"),
        ("京A：12345", "京A12345"),  # full-width colon
        ("京A,12345", "京A12345"),
        ("京A，12345", "京A12345"),  # full-width comma
        ("'京A12345'", "京A12345"),
        ('"京A12345"', "京A12345"),
        ("京A|12345", "京A12345"),
        ("  京a 1\t2\n345 ", "京A12345"),
        ("", ""),
        ("-·:", ""),
        (12345, "12345"),  # not a string: read as its text
    ],
)
def test_normalise_plate(text: object, expected: str) -> None:
    assert normalise_plate(text) == expected


def test_the_ocr_grammar_and_the_store_agree() -> None:
    """OCR output (grammar) and a typed query normalise to the same key."""
    from citysight.config import HotlistEntry
    from inference.detectors.plate_grammar import correct
    from serve_app.rules.hotlist import Hotlist

    assert correct("琼A：12345") == normalise_plate("琼A：12345") == "琼A12345"
    hit = Hotlist([HotlistEntry(plate="琼A12345")]).match("琼A：12345")
    assert hit is not None and hit.exact and hit.read == "琼A12345"
