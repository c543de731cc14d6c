"""benchmarks/fire_det in a small form: the real tiers on the real eval sets (../shared)."""

from __future__ import annotations

import json
from pathlib import Path

from testkit import need_shared

from benchmarks.fire_det.cli import main


def test_small_run_scores_every_tier_on_the_same_images(tmp_path: Path) -> None:
    eval_dir = need_shared("data/eval")
    out = tmp_path / "fire_smoke_det.json"
    rc = main(
        [
            "--eval",
            str(eval_dir),
            "--skip-videos",
            "--rounds",
            "1",
            "--demo-frames",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["tiers"] == ["det", "det_frame", "classical"]
    for task in ("fire", "smoke"):
        rows = res["cross_source"][task]
        assert {r["images"] for r in rows.values()} == {rows["classical"]["images"]}
        # still images are fresh cameras: the temporal tier gives the per-frame answer
        assert rows["det"]["f1"] == rows["det_frame"]["f1"]
        assert rows["det"]["f1"] > rows["classical"]["f1"]
    assert set(res["demo_scenes_synthetic"]) >= {"fire", "smoke"}
    assert "ratio_det_to_classical" in res["per_frame_ms"]["eval_images"]


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    assert main(["--model", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "o.json")]) == 2
