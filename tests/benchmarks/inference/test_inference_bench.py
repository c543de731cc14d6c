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
