"""Norfair-style accuracy gate: fails when a detector tier drops below its baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.eval.baseline import check
from benchmarks.eval.cli import evaluate
from benchmarks.eval.dataset import TASKS
from benchmarks.eval.gate import FULL_BASELINE, GATE_BASELINE, run_gate


def test_gate_subset_meets_baseline(data_dir: Path, models_dir: Path) -> None:
    result = run_gate(data_dir / "eval", models_dir)
    problems = check(result, json.loads(GATE_BASELINE.read_text()))
    assert not problems, "accuracy regressed:\n" + "\n".join(problems)


@pytest.mark.slow
def test_full_sets_meet_baseline(data_dir: Path, models_dir: Path) -> None:
    result = evaluate(data_dir / "eval", models_dir, list(TASKS), {}, all_tiers=True)
    problems = check(result, json.loads(FULL_BASELINE.read_text()))
    assert not problems, "accuracy regressed:\n" + "\n".join(problems)
