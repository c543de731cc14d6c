"""``citysight bench streams`` in a small form: a generated clip, one step per mode, JSON out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.streams.cli import main, sampled_times
from streams.testing.h264 import write_clip


@pytest.mark.parametrize(
    ("times", "period", "expected"),
    [
        # Early frames are taken within 15 % of a period; the cadence stays 1 per period.
        ([i / 25 for i in range(100)], 1.0, [0.0, 0.88, 1.88, 2.88, 3.88]),
        # Keyframes of the street clips: after a gap the next frame is due at once.
        ([0.0, 2.0, 2.4, 4.4, 4.8], 1.0, [0.0, 2.0, 2.4, 4.4, 4.8]),
        ([0.0, 0.5, 1.0, 1.5, 2.0], 1.0, [0.0, 1.0, 2.0]),
        ([], 1.0, []),
    ],
)
def test_sampler_model(times: list[float], period: float, expected: list[float]) -> None:
    assert sampled_times(times, period) == pytest.approx(expected)


def test_bench_streams_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = write_clip(tmp_path / "c.mp4", width=320, height=240, fps=25, seconds=3, gop=25)
    out = tmp_path / "streams.json"
    argv = ["--clip", str(clip), "--start", "1", "--max-steps", "1", "--window-s", "2.0"]
    argv += ["--warmup-s", "0.5", "--width", "96", "--height", "96", "--json", "--out", str(out)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert [p["mode"] for p in printed["profiles"]] == ["full", "keyframe_only"]
    full = printed["profiles"][0]
    # A 3 s loop restarts the sampler each pass: 4 frames per 3 s.
    assert full["expected_fps"] == pytest.approx(4 / 3, abs=0.05)
    assert len(full["steps"]) == 1
    first = full["steps"][0]
    assert first["cameras"] == 1 and first["drops"] == 0
    assert first["delivered_fps_mean"] > 0 and first["cpu_pct_per_camera"] > 0
    assert full["cameras_per_core"] == full["max_sustained_cameras"] / printed["cores"]


def test_missing_clip_returns_2(tmp_path: Path) -> None:
    assert main(["--clip", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o.json")]) == 0 + 2
