"""The Redis layout is spelled once: in ``citysight/keys.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from citysight import keys

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("citysight", "streams", "inference", "serve_app", "benchmarks")
KEY_RE = re.compile(r"^citysight:[a-z]")
# A benchmark's own stream (the baseline it compares the product's feed against): not part
# of the product's layout.
ALLOWED = {"citysight:bench:baseline-feed"}


def key_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, text)`` of string literals (f-string heads included) that look like keys.

    Docstrings are skipped: they may name keys.
    """
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            head = node.values[0] if node.values else None
            if (
                isinstance(head, ast.Constant)
                and isinstance(head.value, str)
                and KEY_RE.match(head.value)
            ):
                found.append((node.lineno, head.value))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and KEY_RE.match(node.value)
            and node.value not in ALLOWED
        ):
            found.append((node.lineno, node.value))
    return found


def test_no_module_but_keys_spells_a_redis_key() -> None:
    spelled: list[str] = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == ROOT / "citysight" / "keys.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            # f-string parts are Constants too: report each literal once per line.
            for line, text in sorted(set(key_literals(tree))):
                spelled.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert spelled == [], "use citysight.keys:\n" + "\n".join(spelled)


def test_the_scan_finds_a_key_spelled_elsewhere() -> None:
    src = '"""citysight:doc"""\nFEED = "citysight:feed"\nx = f"citysight:alert:{1}"\n'
    found = {t for _, t in key_literals(ast.parse(src))}
    assert found == {"citysight:feed", "citysight:alert:"}


@pytest.mark.parametrize(
    ("entry_id", "expected"),
    [
        ("1700000000000-3", (1700000000000, 3)),
        (b"1700000000000-3", (1700000000000, 3)),
        ("1700000000000", (1700000000000, 0)),
        ("0-0", (0, 0)),
        ("x-1", ValueError),
        ("", ValueError),
    ],
)
def test_stream_id(entry_id: str | bytes, expected: tuple[int, int] | type[Exception]) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected):
            keys.stream_id(entry_id)
    else:
        assert keys.stream_id(entry_id) == expected


def test_stream_ids_compare_numerically() -> None:
    assert keys.stream_id("99-10") > keys.stream_id("99-9")
    assert keys.stream_id("100-0") > keys.stream_id("99-99")


def test_key_builders() -> None:
    assert keys.detections_stream(3) == "citysight:detections:3"
    assert keys.snapshot_key("cam-1", 42) == "citysight:snap:cam-1:42"
    assert keys.ws_ticket_key("t") == "citysight:ws-ticket:t"
    assert keys.metrics_key("rules") == "citysight:metrics:rules"
    with pytest.raises(ValueError, match="unknown metrics role"):
        keys.metrics_key("gpu")
