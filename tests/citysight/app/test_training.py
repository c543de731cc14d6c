"""``citysight models train``: wired to the project's trainers, with the demo scenes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_train_fire_smoke_help_reaches_the_trainer() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "citysight", "models", "train", "fire_smoke", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "--resume" in res.stdout and "--seed" in res.stdout


def test_unknown_detector_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from citysight.app.training import main

    with pytest.raises(SystemExit) as exc:
        main(["vending", "--out", "x"])
    assert exc.value.code == 2
    assert "fire_smoke" in capsys.readouterr().err


def test_the_demo_scenes_reach_the_fire_smoke_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The composition root hands the trainer ``streams.synthetic``'s scenes (the inference
    layer may not import them itself)."""
    import inference.training.fire_det.__main__ as fire_det
    from citysight.app.training import main
    from streams.synthetic.scenes import SCENES

    seen: dict[str, Any] = {}

    def fake_trainer(argv: list[str], scenes: Any = None) -> int:
        seen.update(argv=argv, scenes=scenes)
        return 0

    monkeypatch.setattr(fire_det, "main", fake_trainer)
    assert main(["fire_smoke", "--out", "runs/x", "--seed", "3"]) == 0
    assert seen == {"argv": ["train", "--out", "runs/x", "--seed", "3"], "scenes": SCENES}
