"""The fan-out benchmark in a small form (20 subscribers, 3 s per server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.fanout.cli import main


def test_small_fanout_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both servers are measured, every alert reaches every subscriber, the file is written."""
    out = tmp_path / "fanout.json"
    rc = main(
        ["--subscribers", "20", "--duration", "3", "--rates", "5,10", "--out", str(out), "--json"]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed == saved
    for key in ("p99_ms", "p50_ms", "baseline_p99_ms", "baseline_p50_ms", "ratio", "delivered"):
        assert saved[key] > 0, key
    assert saved["lost"] == 0 and saved["baseline"]["lost"] == 0
    assert saved["delivered"] == saved["citysight"]["published"] * 20


@pytest.mark.parametrize(
    "argv",
    [["--subscribers", "0"], ["--subscribers", "100000"], ["--rates", "fast"], ["--duration", "0"]],
)
def test_bad_arguments_exit_with_usage(argv: list[str]) -> None:
    """Out-of-bounds arguments are refused before anything starts."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
