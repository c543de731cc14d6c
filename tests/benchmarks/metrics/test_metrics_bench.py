"""``citysight bench metrics`` in a small form (examples are tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.metrics.cli import main


def test_bench_metrics_small(redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "metrics.json"
    argv = ["--cameras", "300", "--scrapes", "3", "--redis-url", redis_url, "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed == saved
    assert saved["cameras"] == 300 and saved["scrape_p50_ms"] > 0
    assert saved["baseline_read_parse_p50_ms"] > 0 and saved["ratio_scrape_to_baseline"] > 0
    # Two pipelines whatever the camera count; every camera has its 6 state series at least.
    assert saved["redis_round_trips_per_scrape"] <= 2
    assert saved["series"] > 300 * 6
    assert main(argv) == 0
    assert "| cameras |" in capsys.readouterr().out


def test_bench_metrics_rejects_bad_arguments(capsys: pytest.CaptureFixture) -> None:
    assert main(["--cameras", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err
