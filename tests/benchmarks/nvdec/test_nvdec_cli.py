"""``citysight bench nvdec``: the concurrent-decode harness on CPU, GPU facts, bad input."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpus import match_gpu
from benchmarks.nvdec.cli import _ceiling, main, planner_section
from benchmarks.planner.cli import load_measurements
from streams.testing.h264 import write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("nvdec")
    return write_clip(d / "c.mp4", width=320, height=240, fps=25, seconds=2, gop=25)


def test_cpu_streams_decode_concurrently(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nvdec-pyav.json"
    argv = ["--decoder", "pyav", "--clip", str(clip), "--streams", "1,3", "--procs", "2"]
    rc = main([*argv, "--warmup-s", "0.2", "--window-s", "1", "--json", "--out", str(out)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["resolution"] == "320x240" and printed["ceiling"] is None
    one, three = printed["steps"]
    assert (one["streams"], one["processes"]) == (1, 1)
    assert (three["streams"], three["processes"]) == (3, 2)
    for step in (one, three):
        # Every stream decoded (the 2 s clip loops), none failed, nothing corrupt.
        assert step["per_stream_fps_min"] > 0
        assert step["total_fps"] >= step["per_stream_fps_min"] * step["streams"]
        assert step["errors"] == 0 and step["streams_failed_during_window"] == 0
    assert "planner" not in printed


@pytest.mark.skipif(
    importlib.util.find_spec("PyNvVideoCodec") is not None, reason="PyNvVideoCodec present"
)
def test_nvdec_unavailable_is_a_clear_error(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["--clip", str(clip), "--streams", "1", "--out", str(tmp_path / "x.json")])
    assert rc == 2
    assert "PyNvVideoCodec" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("streams", ["0", "x", "", "2000"])
def test_bad_stream_counts(clip: Path, streams: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--decoder", "pyav", "--clip", str(clip), "--streams", streams]) == 2
    assert "--streams" in capsys.readouterr().err


def test_missing_and_corrupt_clips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--decoder", "pyav", "--clip", str(tmp_path / "none.mp4")]) == 2
    assert "clip not found" in capsys.readouterr().err
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 100)
    assert main(["--decoder", "pyav", "--clip", str(bad)]) == 2
    assert "cannot read clip" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("NVIDIA H200", "H200"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L4", "L4"),
        ("Tesla T4", "T4"),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_match_gpu(name: str, spec: str | None) -> None:
    got = match_gpu(name)
    assert (got.name if got else None) == spec


def test_ceiling_scales_with_pixels() -> None:
    gpu = {"name": "NVIDIA H200", "driver": "570", "memory_mib": 1.0}
    c1080 = _ceiling(gpu, 1920 * 1080)
    c720 = _ceiling(gpu, 1280 * 720)
    assert c1080 is not None and c720 is not None
    assert c1080["fps"] == pytest.approx(7 * 771.0)
    assert c720["fps"] == pytest.approx(7 * 771.0 * 2.25, abs=0.1)
    assert _ceiling(None, 1920 * 1080) is None


def test_saturated_steps_feed_the_planner(tmp_path: Path) -> None:
    ceiling = _ceiling({"name": "NVIDIA H200", "driver": "", "memory_mib": 0}, 1920 * 1080)
    idle = [{"streams": 8, "total_fps": 2000.0, "decoder_util_pct": 40.0}]
    assert planner_section(idle, ceiling) is None
    assert planner_section(idle, None) is None
    busy = [*idle, {"streams": 32, "total_fps": 5000.0, "decoder_util_pct": 97.0}]
    section = planner_section(busy, ceiling)
    assert section == {"nvdec_fps_per_engine": {"H200": pytest.approx(5000 / 7, abs=0.1)}}
    (tmp_path / "nvdec-nvdec.json").write_text(json.dumps({"planner": section}))
    meas = load_measurements(tmp_path)
    assert meas.nvdec_fps_per_engine["H200"] == pytest.approx(714.3)


def test_nvdec_path_needs_neither_pyav_nor_pydantic(clip: Path) -> None:
    """A bare GPU node (torch, PyNvVideoCodec) runs the NVDEC bench without PyAV or pydantic."""
    code = (
        "import sys; sys.modules['av'] = None; sys.modules['pydantic'] = None\n"
        "from benchmarks.nvdec.cli import main\n"
        f"sys.exit(main(['--clip', {str(clip)!r}, '--streams', '1']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        assert proc.returncode == 2, proc.stderr
        assert "unavailable here" in proc.stderr and "PyNvVideoCodec" in proc.stderr
    assert "ModuleNotFoundError" not in proc.stderr and "ImportError" not in proc.stderr
