"""DeepStream's runtime source add/remove, run for real on CPU under Debian's GStreamer.

The scenario runs in the system ``python3`` (``python3-gi``) as a subprocess: an empty
playing pipeline (``funnel`` standing in for ``nvstreammux``), two file sources added at
run time, one removed; the pipeline keeps playing and the other source keeps flowing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from streams.testing.h264 import write_clip

ROOT = Path(__file__).resolve().parents[3]
SYSTEM_PY = Path("/usr/bin/python3")


def _has_gi() -> bool:
    if not SYSTEM_PY.exists():
        return False
    probe = "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst"
    return subprocess.run([str(SYSTEM_PY), "-c", probe], capture_output=True).returncode == 0


@pytest.mark.skipif(not _has_gi(), reason="needs /usr/bin/python3 with python3-gi and GStreamer")
def test_add_two_sources_remove_one_pipeline_keeps_running(tmp_path: Path) -> None:
    # 8 s clips played at their native rate outlast the ~4 s scenario.
    a = write_clip(tmp_path / "a.mp4", width=320, height=240, fps=25, seconds=8.0)
    b = write_clip(tmp_path / "b.mp4", width=320, height=240, fps=25, seconds=8.0, red_square=True)
    proc = subprocess.run(
        [str(SYSTEM_PY), "-m", "streams.testing.gst_runtime", str(a), str(b)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    both, removed, after = out["snaps"]
    assert both["ids"] == [0, 1] and removed["ids"] == [1] == after["ids"]
    # Both sources flowed into the mux once added.
    assert both["buffers"]["0"] > 5 and both["buffers"]["1"] > 5
    # The removed source stopped; the remaining one kept producing at about its rate.
    assert after["buffers"]["0"] == removed["buffers"]["0"]
    assert after["buffers"]["1"] - removed["buffers"]["1"] >= 10
    assert after["sink"] > removed["sink"]
    assert out["state"] == "playing" and out["errors"] == []
