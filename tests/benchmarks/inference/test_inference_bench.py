"""The inference benchmark runs end to end in a small form (one model, short windows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.inference import cli


def test_small_benchmark_writes_ratios(models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "inference.json"
    code = cli.main(
        [
            "--models",
            "face",
            "--models-dir",
            str(models_dir),
            "--seconds",
            "0.3",
            "--width",
            "320",
            "--height",
            "240",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    doc = json.loads(out.read_text())
    face = doc["models"]["face"]
    for key in ("ort", "triton_c1", "triton_c8", "batch8_shm", "batch8_plain"):
        assert face[key]["frames_per_s"] > 0 and face[key]["latency_ms_p50"] > 0
    for key in ("batching_gain_c8_vs_c1", "shm_vs_plain_batch8", "triton_vs_ort_c1"):
        assert face[key] > 0
    assert face["triton_c8"]["avg_batch"] >= 1.0
    assert face["tier"] == "yunet"


def test_unknown_model_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--models", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_frames_fall_back_to_noise(tmp_path: Path) -> None:
    frames = cli.load_frames(3, 64, 48, tmp_path / "missing")
    assert [f.shape for f in frames] == [(48, 64, 3)] * 3


def test_small_batch_sweep_writes_gains(models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "inference-batch.json"
    argv = ["--models", "plate,fire_smoke", "--models-dir", str(models_dir), "--seconds", "0.1"]
    argv += ["--width", "320", "--height", "240", "--batches", "1,3", "--out", str(out)]
    assert cli.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["batches"] == [1, 3] and doc["provider_requested"] == "cpu"
    plate = doc["models"]["plate"]
    assert plate["batchable"] is True and plate["provider"] == "CPUExecutionProvider"
    for b in ("1", "3"):
        for part in ("net", "detect"):
            row = plate["batches"][b][part]
            assert row["frames_per_s"] > 0 and row["latency_ms_p50"] > 0 and row["gain_vs_b1"] > 0
    assert plate["batches"]["1"]["net"]["gain_vs_b1"] == 1.0
    # The classical fire/smoke tier has no network: detect() only, said so.
    fire = doc["models"]["fire_smoke"]
    assert set(fire["batches"]["3"]) == {"detect"} and fire["note"]
    assert "planner" not in doc  # a CPU run never stands in for a GPU rate


@pytest.mark.parametrize("batches", ["0,8", "x", "-1"])
def test_bad_batch_sizes_are_rejected(batches: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--models", "face", "--batches", batches]) == 2
    assert "--batches" in capsys.readouterr().err


def test_planner_gets_only_gpu_rates() -> None:
    from benchmarks.inference.batches import planner_section

    def model(provider: str, fps: list[float]) -> dict[str, object]:
        rows = {str(i): {"net": {"frames_per_s": f}} for i, f in enumerate(fps)}
        return {"provider": provider, "batches": rows}

    results = {
        "face": model("CUDAExecutionProvider", [100.0, 900.0, 700.0]),
        "plate": model("CPUExecutionProvider", [50.0, 60.0]),
    }
    assert planner_section(results, "H100") == {"inference_fps_per_gpu": {"H100": {"face": 900.0}}}
    assert planner_section(results, None) is None
    assert planner_section({"plate": results["plate"]}, "H100") is None
