"""``citysight bench video`` in its small form: every number it reports is there, measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.video.cli import main


def test_bench_video_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "video.json"
    assert main(["--small", "--json", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["live"]
    assert json.loads(capsys.readouterr().out)["live"] == res
    delay = res["delay_glass_to_glass"]
    assert delay["frames_with_clock"] > 10 and not delay["errors"]
    assert delay["p50_ms"] > 0  # read from the burnt-in clock, not assumed
    assert [p["viewers"] for p in res["phases"]] == [0, 4, 16]
    assert all(p["analytics_fps"] > 0 for p in res["phases"])
    assert [p["viewers_connected"] for p in res["phases"]] == [0, 4, 16]
    assert all(p["mbit_s_per_viewer"] > 0 for p in res["phases"][1:])
    assert set(res["cpu_pct_per_viewer"]) == {"4", "16"}
