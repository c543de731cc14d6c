"""The clip part of ``citysight bench video`` in a small form: a real H.264 file, the real
ring, muxer and redactor; the numbers it reports are consistent with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.video.clips import CLIP_S, MINUTE_S, main, measure_source, table
from citysight.config import InferenceService
from citysight.redaction import FaceRedactor
from streams.testing.h264 import write_clip


def test_measure_source_reports_ring_minute_clip_and_blur(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "cam.mp4", width=320, height=240, fps=10, seconds=4.0, gop=10)
    red = FaceRedactor.from_config(InferenceService(tiers={"face": ["haar"]}))
    out = measure_source("tiny", src, blur=True, redactor=red)
    size = src.stat().st_size
    # A minute of this camera: its bitrate times 60 s (plus a GOP and the per-packet
    # overhead the ring counts), never less than the minute itself.
    minute = size / 4.0 * MINUTE_S
    assert minute <= out["ring_bytes_per_camera_minute"] <= 1.3 * minute + 200_000
    assert MINUTE_S <= out["ring_seconds_held"] <= MINUTE_S + 1.0 + 0.05
    assert CLIP_S <= out["clip_duration_s"] <= CLIP_S + 1.0 + 0.05  # from a keyframe
    assert out["clip_frames"] == round(out["clip_duration_s"] * 10)
    assert out["clip_write_ms"] > 0 and out["tap_us_per_packet"] > 0
    assert out["blur_ms"] > 0 and out["blur_tier"] == "haar"
    row = table({"sources": {"tiny": out}}).splitlines()[-1]
    assert row.startswith("| tiny | 320x240@10 |")


def test_the_cli_refuses_unknown_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--nope"])
    assert "unrecognized arguments" in capsys.readouterr().err
