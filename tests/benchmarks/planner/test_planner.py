"""Hand-worked checks of the capacity planner (model and CLI)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from benchmarks.gpus import PUBLISHED, Source, weakest
from benchmarks.planner.cli import load_measurements, main
from benchmarks.planner.model import (
    DecodeMode,
    Measurements,
    PlanError,
    PlanInput,
    parse_resolution,
    plan,
)

FLEET = 7500


def _h200(**kw: Any) -> PlanInput:
    base: dict[str, Any] = {"cameras": FLEET, "gpu": "H200", "planning_factor": 1.0}
    base.update(kw)
    return PlanInput(**base)


@pytest.mark.parametrize(
    ("inp", "load_fps", "decode_gpus"),
    [
        # 7,500 x 25 = 187,500 fps / (7 x 771 = 5,397) = 34.7 -> 35
        (_h200(), 187_500.0, 35),
        # keyframe-only, 2 s GOP at 25 fps: 1 frame in 50 -> 3,750 fps -> 1 GPU
        (_h200(decode_mode=DecodeMode.KEYFRAME_ONLY, gop_s=2.0), 187_500.0 / 50, 1),
        # 720p5 sub-stream: 7,500 x 5 x (921,600 / 2,073,600) = 16,667 / 5,397 = 3.09 -> 4
        (_h200(decode_mode=DecodeMode.SUBSTREAM), 16_666.67, 4),
        # same at the default planning factor 0.7: 16,667 / 3,777.9 = 4.41 -> 5
        (_h200(decode_mode=DecodeMode.SUBSTREAM, planning_factor=0.7), 16_666.67, 5),
        # 4k is 4x the pixels of 1080p: 100 x 25 x 4 = 10,000 / 5,397 -> 2
        (_h200(cameras=100, resolution="4k"), 10_000.0, 2),
        # WxH form: 1280x720 == 720p
        (_h200(resolution="1280x720", camera_fps=5), 16_666.67, 4),
    ],
)
def test_decode_gpus_hand_worked(inp: PlanInput, load_fps: float, decode_gpus: int) -> None:
    result = plan(inp)
    assert result.decode_load_fps_1080p_equiv.value == pytest.approx(load_fps, rel=1e-4)
    (row,) = result.gpus
    assert row.decode_gpus.value == decode_gpus
    assert row.gpus_total.value == max(decode_gpus, row.inference_gpus.value)


def test_keyframe_only_is_one_fiftieth_of_full_decode() -> None:
    full = plan(_h200()).decode_load_fps_1080p_equiv.value
    key = plan(_h200(decode_mode=DecodeMode.KEYFRAME_ONLY, gop_s=2.0))
    assert key.decode_load_fps_1080p_equiv.value * 50 == pytest.approx(full)
    # analytics cannot run faster than keyframes arrive, and the cap is reported
    assert key.frame_results_per_s.value == FLEET * 0.5
    assert any("capped" in n for n in key.notes)
    # the whole stream is still received
    assert key.ingest_mbps.value == pytest.approx(plan(_h200()).ingest_mbps.value)


@pytest.mark.parametrize(
    ("gpu", "engines"),
    [("H100", 7), ("H200", 7), ("A100", 5), ("L4", 4), ("L40S", 3), ("T4", 2)],
)
def test_published_engine_counts(gpu: str, engines: int) -> None:
    spec = PUBLISHED[gpu]
    assert spec.nvdec_engines.value == engines
    assert spec.nvdec_engines.source is Source.PUBLISHED
    assert spec.nvdec_engines.note


def test_every_number_has_a_source() -> None:
    data = plan(PlanInput(cameras=FLEET)).model_dump(mode="json")
    found = 0

    def walk(node: Any) -> None:
        nonlocal found
        if isinstance(node, dict):
            if "value" in node:
                assert node["source"] in {"input", "measured", "published", "assumed"}
                assert node["unit"] and node["basis"]
                found += 1
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    assert found >= 6 + 7 * len(PUBLISHED)


def test_h265_rate_is_assumed_and_propagates() -> None:
    (row,) = plan(_h200(codec="h265")).gpus
    assert row.nvdec_capacity_fps.source is Source.ASSUMED
    assert row.decode_gpus.source is Source.ASSUMED


def test_redis_shards_use_planning_factor() -> None:
    # 37,500 results/s; 41,000 XADD/s per shard: 1 shard at 1.0, 2 at 0.7
    assert plan(_h200()).redis_shards.value == 1
    assert plan(_h200(planning_factor=0.7)).redis_shards.value == 2
    assert plan(_h200()).redis_shards.source is Source.MEASURED


def test_measurements_override_and_are_labelled(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "planner": {
                    "nvdec_fps_per_engine": {"h200": 700.0},
                    "inference_fps_per_gpu": {"H200": {"face": 1000.0}},
                    "rules_results_per_core_per_s": 10000.0,
                }
            }
        )
    )
    (tmp_path / "other.json").write_text(json.dumps({"unrelated": 1}))
    meas = load_measurements(tmp_path)
    result = plan(_h200(model_mix={"face": 1.0}), meas)
    (row,) = result.gpus
    assert row.nvdec_capacity_fps.source is Source.MEASURED
    assert row.decode_gpus.value == math.ceil(187_500 / (7 * 700))
    assert row.inference_gpus.value == math.ceil(37_500 / 1000)
    assert row.inference_gpus.source is Source.MEASURED
    assert result.rules_cpu_cores.value == 4
    assert result.rules_cpu_cores.source is Source.MEASURED


def test_missing_results_dir_means_no_measurements(tmp_path: Path) -> None:
    assert load_measurements(tmp_path / "absent") == Measurements()


def test_bad_results_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"planner": {"typo_key": 1}}))
    with pytest.raises(PlanError, match=r"bad\.json"):
        load_measurements(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"cameras": 0}, ValidationError),
        ({"cameras": FLEET, "gpu": "B200"}, ValidationError),
        ({"cameras": FLEET, "resolution": "huge"}, ValidationError),
        ({"cameras": FLEET, "planning_factor": 0}, ValidationError),
        ({"cameras": FLEET, "model_mix": {"face": 1.5}}, ValidationError),
        ({"cameras": FLEET, "camra_fps": 25}, ValidationError),  # typo rejected
        ({"cameras": FLEET, "model_mix": {"weapons": 1.0}}, PlanError),
        ({"cameras": FLEET}, None),
    ],
)
def test_input_errors(kwargs: dict[str, Any], error: type[Exception] | None) -> None:
    if error is None:
        plan(PlanInput(**kwargs))
        return
    with pytest.raises(error):
        plan(PlanInput(**kwargs))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1080p", (1920, 1080)), ("720P", (1280, 720)), ("4k", (3840, 2160)), ("640x360", (640, 360))],
)
def test_parse_resolution(text: str, expected: tuple[int, int]) -> None:
    assert parse_resolution(text) == expected


def test_weakest() -> None:
    assert weakest(Source.MEASURED, Source.ASSUMED, Source.PUBLISHED) is Source.ASSUMED
    assert weakest(Source.INPUT, Source.MEASURED) is Source.MEASURED


@pytest.mark.parametrize(
    ("argv", "rc", "stderr_has"),
    [
        (["--cameras", "0"], 2, "cameras"),
        (["--gpu", "B200"], 2, "unknown GPU type"),
        (["--model", "face"], 2, "NAME=FRACTION"),
        (["--decode", "sometimes"], 2, "invalid choice"),
        (["--gpu", "h200"], 0, ""),
    ],
)
def test_cli_exit_codes(
    argv: list[str], rc: int, stderr_has: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main([*argv, "--no-measured"])
    except SystemExit as exc:  # argparse rejects unknown choices itself, also with 2
        code = int(exc.code or 0)
    assert code == rc
    assert stderr_has in capsys.readouterr().err


def test_cli_json_is_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--gpu", "H200", "--planning-factor", "1.0", "--no-measured"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpus"][0]["decode_gpus"] == {
        "value": 35.0,
        "unit": "GPUs",
        "source": "published",
        "basis": "ceil(187,500 / 5,397)",
    }


def test_cli_table_lists_every_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-measured"]) == 0
    out = capsys.readouterr().out
    for gpu in PUBLISHED:
        assert f"\n{gpu} " in out
    assert "[assumed]" in out and "[published]" in out
