"""The CI accuracy gate: a fixed subset that runs in well under a minute on 2 cores.

``python -m benchmarks.eval.gate --write`` measures the subset and writes
``benchmarks/baselines/eval_gate_baseline.json`` (floors slightly below the measured
numbers); ``tests/benchmarks/eval/test_accuracy_gate.py`` fails when a tier drops below.
The full-set floors are in ``eval_baseline.json`` (checked by a ``slow`` test).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.eval.baseline import check, make_baseline
from benchmarks.eval.cli import DEFAULT_DATA, default_models_dir
from benchmarks.eval.runner import run_task

BASELINES = Path(__file__).resolve().parents[1] / "baselines"
GATE_BASELINE = BASELINES / "eval_gate_baseline.json"
FULL_BASELINE = BASELINES / "eval_baseline.json"

#: task -> tier -> image limit (None: the whole set). "" is the task's only tier.
GATE: dict[str, dict[str, int | None]] = {
    "faces": {"yunet": None, "haar": 16},
    "plates": {"y5fu": None, "ocr_det": 6},
    "plate_text": {"": 64},
    "fire": {"det": None, "classical": None},
    "smoke": {"det": None, "classical": None},
}


def run_gate(data: Path = DEFAULT_DATA, models: Path | None = None) -> dict[str, Any]:
    """Score the gate subset; shaped like :func:`benchmarks.eval.cli.evaluate` output."""
    models = models or default_models_dir()
    result: dict[str, Any] = {}
    for task, tiers in GATE.items():
        for tier, limit in tiers.items():
            r = run_task(data, task, models, tier or None, limit)
            result.setdefault(task, {"tiers": {}})["tiers"][r["tier"]] = r
    return result


def main(argv: list[str] | None = None) -> int:
    """Measure the gate subset; ``--write`` stores new floors, otherwise checks them."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.eval.gate")
    p.add_argument("--write", action="store_true", help="write the gate baseline")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--models", type=Path, default=None)
    args = p.parse_args(argv)
    result = run_gate(args.data, args.models)
    if args.write:
        GATE_BASELINE.parent.mkdir(parents=True, exist_ok=True)
        GATE_BASELINE.write_text(json.dumps(make_baseline(result), indent=2) + "\n")
        print(f"wrote {GATE_BASELINE}")
        return 0
    problems = check(result, json.loads(GATE_BASELINE.read_text()))
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
