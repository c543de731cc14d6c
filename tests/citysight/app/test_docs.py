"""docs/configuration.md's generated reference and the JSON schema file match the code."""

from __future__ import annotations

from pathlib import Path

from citysight.app.docs import REFERENCE, render_reference, schema_text

ROOT = Path(__file__).resolve().parents[3]


def test_config_reference_is_current() -> None:
    text = (ROOT / REFERENCE).read_text(encoding="utf-8")
    assert render_reference(text) == text, f"run `python -m citysight.app.docs`, commit {REFERENCE}"


def test_a_reference_without_its_markers_is_an_error() -> None:
    import pytest

    with pytest.raises(ValueError, match="start marker"):
        render_reference("# Configuration\n")


def test_schema_file_is_current() -> None:
    path = ROOT / "docs" / "config.schema.json"
    assert path.read_text(encoding="utf-8") == schema_text(), "run `python -m citysight.app.docs`"


def test_readme_quick_start_has_exactly_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Quick start", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.strip()]
    assert lines[0] == "bash infra/local/setup.sh && .venv/bin/citysight demo"
    assert lines[1] == "bash infra/local/test.sh"
    assert lines[1] in (ROOT / ".ci" / "run").read_text()
