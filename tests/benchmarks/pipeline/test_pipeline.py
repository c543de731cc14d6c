"""Pipeline benchmark on a 2 s real clip: every stage is timed and the profiles differ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testkit import need_shared

from benchmarks.pipeline.cli import DETECTORS, main


@pytest.mark.parametrize(
    "argv",
    [
        ["--profiles", "3fps"],
        ["--detectors", "faces"],
        ["--video", "/nonexistent.mp4"],
        ["--seconds", "0"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], tmp_path: Path) -> None:
    assert main([*argv, "--out", str(tmp_path / "p.json")]) == 2
    assert not (tmp_path / "p.json").exists()


def test_two_second_clip(tmp_path: Path) -> None:
    video = need_shared("data/videos/street-720p.mp4")
    out = tmp_path / "pipeline.json"
    argv = ["--video", str(video), "--seconds", "2", "--out", str(out)]
    assert main([*argv, "--profiles", "1fps,5fps,keyframe"]) == 0
    doc = json.loads(out.read_text())
    res = {r["profile"]: r for r in doc["results"]}
    assert set(res) == {"1fps", "5fps", "keyframe"}
    for r in res.values():
        stages = set(r["stages"])
        assert {"decode", "convert", "resize", "publish", "rules"} <= stages
        assert {f"infer:{d}" for d in DETECTORS} <= stages
        assert r["streams_per_core"] > 0
    # 25 fps source: 2 s decodes ~50 frames; the profile decides how many are analysed.
    assert 45 <= res["1fps"]["frames_decoded"] <= 55
    assert res["1fps"]["frames_analysed"] == 2
    assert res["5fps"]["frames_analysed"] == 10
    assert res["keyframe"]["frames_decoded"] == res["keyframe"]["frames_analysed"] >= 1
    assert res["5fps"]["cpu_ms_per_video_s"] > res["1fps"]["cpu_ms_per_video_s"]


@pytest.mark.slow
def test_all_profiles_ten_seconds(tmp_path: Path) -> None:
    video = need_shared("data/videos/street-720p.mp4")
    out = tmp_path / "pipeline.json"
    assert main(["--video", str(video), "--seconds", "10", "--out", str(out)]) == 0
    res = {r["profile"]: r for r in json.loads(out.read_text())["results"]}
    assert res["2fps"]["frames_analysed"] == 20
    assert res["keyframe"]["streams_per_core"] > res["5fps"]["streams_per_core"]
