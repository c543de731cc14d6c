"""``citysight bench vending`` in a small form (examples are tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testkit import need_shared

from benchmarks.vending.cli import main


@pytest.mark.slow  # five model sessions and their load checks: ~15 s on 2 busy cores
def test_bench_vending_small(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    models, videos = need_shared("models"), need_shared("data/videos")
    out = tmp_path / "vending.json"
    argv = ["--models", str(models), "--videos", str(videos), "--out", str(out), "--json"]
    small = ["--clips", "street_intel_person-bicycle-car-detection.gif", "--frames-per-clip", "2"]
    assert main([*argv, *small, "--amortised-frames", "3"]) == 0
    saved = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == saved
    assert saved["frames"] == 2 and saved["clips"][0]["frames"] == 2
    assert saved["timing"]["yolox"]["p50_ratio_vs_yolox"] == 1.0
    assert saved["timing"]["picodet"]["p50_ms"] > 0
    assert saved["classes"]["car"]["picodet"] >= 1  # a car is in view on that clip
    tiers = saved["amortised"]["tiers"]
    assert tiers["yolox (every frame, today)"]["ratio_vs_today"] == 1.0
    assert all(t["frames"] == 3 for t in tiers.values())
    assert "| vending tier |" in out.with_suffix(".md").read_text()


def test_bench_vending_refuses_missing_models(tmp_path: Path) -> None:
    assert main(["--models", str(tmp_path), "--out", str(tmp_path / "x.json")]) == 2
    assert main(["--frames-per-clip", "0", "--out", str(tmp_path / "x.json")]) == 2
