"""``citysight bench urls`` in a small form (examples are tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.urls.cli import main


def test_bench_urls_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "urls.json"
    argv = ["--lengths", "64,2049,30000", "--repeats", "2", "--removed-max", "64"]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    saved = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == saved
    assert saved["over_cap_refused"] is True
    assert [r["accepted"] for r in saved["rows"]] == [True, False, False]
    assert [r["length"] for r in saved["rows"]] == [64, 2049, 30000]
    assert "removed_pattern_us" in saved["rows"][0] and "removed_pattern_us" not in saved["rows"][1]
    assert main([*argv, "--out", str(out)]) == 0
    assert "| length | accepted |" in capsys.readouterr().out


def test_bench_urls_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--repeats", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err
