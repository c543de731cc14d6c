"""``citysight bench stats`` in a small form (examples are tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.stats.cli import main


def test_bench_stats_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "stats.json"
    assert main(["--alerts", "60", "--repeats", "1", "--out", str(out), "--json"]) == 0
    saved = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == saved
    (row,) = saved["rows"]
    assert row["alerts"] == row["city_total"] == row["csv_rows"] == 60
    # Meilan holds two of the five demo cameras (fire, vending): 24 of 60 alerts.
    assert row["township_total"] == 24
    assert row["stats_city_ms"] > 0 and row["stats_city_x_baseline"] > 0


def test_bench_stats_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--repeats", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err
