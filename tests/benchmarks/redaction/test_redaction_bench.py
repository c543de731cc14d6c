"""``citysight bench redaction`` in a small form (examples are tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testkit import need_shared

from benchmarks.redaction.cli import main


def test_bench_redaction_small(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    models = need_shared("models")
    out = tmp_path / "redaction.json"
    argv = ["--sizes", "360p", "--tiers", "yunet", "--repeats", "2", "--models-dir", str(models)]
    rc = main([*argv, "--redis-url", redis_url, "--out", str(out), "--json"])
    assert rc == 0
    saved = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == saved
    modes = {row["mode"]: row for row in saved["rows"]}
    assert set(modes) == {"unredacted", "recorded_only", "detect_yunet", "detect_yunet_cached"}
    assert modes["recorded_only"]["ratio"] == 1.0 and modes["detect_yunet"]["ratio"] > 0
    assert "| 360p | detect_yunet |" in out.with_suffix(".md").read_text()


def test_bench_redaction_refuses_bad_repeats(tmp_path: Path) -> None:
    assert main(["--repeats", "0", "--out", str(tmp_path / "x.json")]) == 2
