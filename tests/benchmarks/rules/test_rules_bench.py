"""``citysight bench rules`` in a small form (examples are tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.rules.cli import main


def test_bench_rules_small(redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "rules.json"
    rc = main(
        [
            "--cameras",
            "100",
            "--fps",
            "5",
            "--duration",
            "2",
            "--shards",
            "2",
            "--redis-url",
            redis_url,
            "--out",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed == saved
    for key in ("sustained_frame_results_per_s", "latency_p50_ms", "latency_p99_ms", "lost"):
        assert key in saved
    assert saved["produced"] > 500 and saved["lost"] == 0
    assert saved["alerts"] >= 1  # camera sim00000 burns
    assert saved["latency_p50_ms"] <= saved["latency_p99_ms"]


def test_bench_rules_rejects_bad_arguments() -> None:
    assert main(["--cameras", "0"]) == 2
