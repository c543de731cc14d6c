"""Plate grammar per type (GA 36-2018): the valid/invalid table and the position fixes."""

from __future__ import annotations

import pytest

from inference.detectors.plate_grammar import (
    PATTERNS,
    correct,
    correct_reading,
    is_valid,
    plate_type,
)

# (text, type or None when invalid)
TABLE = [
    ("皖AY339S", "ordinary"),
    ("琼A12345", "ordinary"),
    ("京AD1234", "ordinary"),  # a D in an ordinary serial is fine
    ("皖AI2345", None),  # no I after the province
    ("皖AO2345", None),  # no O
    ("皖I12345", None),  # nor as the letter
    ("AA12345", None),  # no province
    ("皖A1234", None),  # too short
    ("皖112345", None),  # the second character is a letter
    ("粤BD12345", "nev_small"),
    ("粤BF1A345", None),  # small NEV: four digits at the end
    ("粤BFA2345", "nev_small"),
    ("琼AD00001", "nev_small"),
    ("粤BA12345", None),  # small NEV: D or F third
    ("粤B12345D", "nev_large"),
    ("粤B12345F", "nev_large"),
    ("粤B1234AD", None),  # large NEV: five digits then D/F
    ("粤B123456", None),  # 8 characters but neither NEV form
    ("粤B1234警", "police"),
    ("京A12345警", None),
    ("京A1234学", "coach"),
    ("京A12345学", None),
    ("苏E1234挂", "trailer"),
    ("沪A1234领", "consulate"),
    ("粤Z1234港", "hk_macao"),
    ("粤Z1A34澳", "hk_macao"),
    ("粤B1234港", None),  # HK/Macao plates are 粤Z only
    ("123456使", "embassy"),
    ("12345使", None),
    ("皖A1234567", None),
]


@pytest.mark.parametrize(("text", "kind"), TABLE)
def test_plate_grammar_table(text: str, kind: str | None) -> None:
    assert plate_type(text) == kind
    assert is_valid(text) is (kind is not None)


def test_every_type_has_a_valid_row() -> None:
    assert {k for _, k in TABLE if k} == set(PATTERNS)


@pytest.mark.parametrize(
    ("raw", "fixed"),
    [
        ("皖A·VQ225", "皖AVQ225"),
        ("#皖A 12O45", "皖A12045"),  # O after the province is a 0
        ("皖429C52", "皖A29C52"),  # a 4 in the letter position is an A
        ("hello", ""),
        ("粤B·DI234S", "粤BD12345"),  # small NEV: digits at 5-8 (I→1, S→5)
        ("粤B·0A2345", "粤BDA2345"),  # small NEV: a 0 third is a D
        ("粤B·1234SD", "粤B12345D"),  # large NEV: digits at 3-7
        ("粤B·12345D]", "粤B12345D"),  # a trailing non-plate character is dropped
        # A ninth plate character is not dropped: that would turn an unreadable plate into
        # a wrong one (old behaviour: 皖A123456).
        ("皖A1234567", ""),
        ("皖A1234AB", ""),  # 8 characters, no NEV form: not cut to an ordinary plate
        ("123 456使", "123456使"),
    ],
)
def test_plate_correction(raw: str, fixed: str) -> None:
    assert correct(raw) == fixed


def test_reading_keeps_confidences_aligned() -> None:
    r = correct_reading("#皖A12345", [0.1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.99])
    assert r is not None and r.text == "皖A12345" and r.plate_type == "ordinary"
    assert r.conf == (0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.99)  # the junk '#' is not counted
    assert r.min_conf == 0.5
    short = correct_reading("皖A12345", [0.9])
    assert short is not None and short.min_conf == 0.0  # missing confidences count as none
