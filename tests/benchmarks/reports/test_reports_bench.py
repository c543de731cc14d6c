"""``citysight bench reports`` in a small form (examples are tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.reports.cli import main


def test_bench_reports_small(redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "reports.json"
    argv = ["--sizes", "720p", "--photos", "1", "--repeats", "2"]
    assert main([*argv, "--redis-url", redis_url, "--out", str(out), "--json"]) == 0
    saved = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == saved
    modes = {row["mode"]: row for row in saved["rows"]}
    assert set(modes) == {"baseline", "report_1x720p", "feedback_1x720p"}
    assert modes["baseline"]["ratio"] == 1.0 and modes["report_1x720p"]["n"] == 2
    assert "| report_1x720p |" in out.with_suffix(".md").read_text()


def test_bench_reports_refuses_bad_arguments(tmp_path: Path) -> None:
    assert main(["--repeats", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert main(["--photos", "9", "--out", str(tmp_path / "x.json")]) == 2
