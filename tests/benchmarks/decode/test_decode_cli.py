"""``citysight bench decode`` in a small form: a generated clip, JSON out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.decode.cli import main
from streams.testing.h264 import write_clip


def test_bench_decode_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = write_clip(tmp_path / "c.mp4", width=320, height=240, fps=25, seconds=2, gop=25)
    out = tmp_path / "decode.json"
    assert main(["--clip", str(clip), "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["ffmpeg_fps"] > 0 and printed["citysight_fps"] > 0
    assert printed["ratio"] == pytest.approx(
        printed["citysight_fps"] / printed["ffmpeg_fps"], rel=0.01
    )
    c = printed["clips"][0]
    assert c["frames"] == 50 and c["keyframe_only_frames"] == 2
    assert c["keyframe_only_cpu_s_per_camera_minute"] >= 0
    # Like for like: conversion of the 5 fps samples is reported apart from decode fps.
    assert c["citysight_frames_out_5fps"] == 10
    assert c["citysight_convert_ms_per_sampled_frame"] > 0
    assert c["citysight_fps_with_convert"] <= c["citysight_fps"]


def test_missing_clip_returns_2(tmp_path: Path) -> None:
    assert main(["--clip", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o.json")]) == 2


def test_whole_reader_ratio_at_the_1fps_profile_is_reported(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", width=160, height=96, fps=10, seconds=3, gop=10)
    out = tmp_path / "r.json"
    assert main(["--clip", str(clip), "--json", "--out", str(out)]) == 0
    (c,) = json.loads(out.read_text())["clips"]
    assert c["citysight_fps_1fps_profile"] > 0
    assert c["ratio_1fps_profile"] == pytest.approx(
        c["citysight_fps_1fps_profile"] / c["ffmpeg_fps"], rel=0.02
    )
