"""The map benchmark in a small form (the full run: ``python -m benchmarks.map.run``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")

from benchmarks.map import run as bench

if shutil.which(bench.CHROMIUM) is None:
    pytest.skip(f"chromium not installed at {bench.CHROMIUM}", allow_module_level=True)


def test_small_benchmark_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "map.json"
    assert (
        bench.main(["--cameras", "300", "--alerts", "30", "--bursts", "2", "--out", str(out)]) == 0
    )
    res = json.loads(out.read_text())
    assert res["cameras"] == 300 and res["open_alerts"] == 30
    assert res["listed_alerts_at_load"] == 30
    # Every burst adds 50 new alerts (the other 50 messages update listed ones).
    assert res["listed_alerts_at_end"] == 30 + 2 * 50
    assert res["apply_100_alert_messages_ms"]["bursts"] == 2
    assert res["time_to_first_render_ms"] > 0
    assert res["page_errors"] == []


def test_screenshot_mode(tmp_path: Path) -> None:
    out = tmp_path / "map.png"
    assert bench.main(["--cameras", "200", "--alerts", "20", "--screenshot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
