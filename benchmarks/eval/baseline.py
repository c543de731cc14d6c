"""Accuracy baselines (norfair-style gate): floors per task and tier, checked in CI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS = ("precision", "recall", "f1", "text_exact")
#: Metrics where lower is better: the baseline holds a ceiling, not a floor (plate crops
#: read as a wrong plate; an unreadable crop is not in it).
CEILINGS = ("wrong_rate",)


def flatten(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{"task/tier": {metric: value}}`` from an :func:`~benchmarks.eval.cli.evaluate` result."""
    flat: dict[str, dict[str, float]] = {}
    for task, r in result.items():
        if not isinstance(r, dict) or ("tier" not in r and "tiers" not in r):
            continue
        rows = {r["tier"]: r} if "tier" in r else {}
        rows.update(r.get("tiers", {}))
        for tier, v in rows.items():
            if "error" in v:
                continue
            flat[f"{task}/{tier}"] = {m: float(v[m]) for m in METRICS + CEILINGS if m in v}
    return flat


def make_baseline(result: dict[str, Any], margin: float = 0.03) -> dict[str, dict[str, float]]:
    """Floors slightly below the measured numbers (``margin`` absolute, rounded down);
    ceilings (:data:`CEILINGS`) slightly above, rounded up."""
    return {
        key: {
            m: min(1.0, math.ceil((v + margin) * 100) / 100)
            if m in CEILINGS
            else max(0.0, math.floor((v - margin) * 100) / 100)
            for m, v in vals.items()
        }
        for key, vals in flatten(result).items()
    }


def check(result: dict[str, Any], baseline: dict[str, dict[str, float]]) -> list[str]:
    """Regressions: every metric below its floor (above its ceiling), every entry not measured."""
    flat = flatten(result)
    problems = []
    for key, floors in sorted(baseline.items()):
        got = flat.get(key)
        if got is None:
            problems.append(f"{key}: not measured")
            continue
        for m, floor in floors.items():
            if m in CEILINGS:
                if got.get(m, 2.0) > floor:
                    problems.append(f"{key}: {m} {got.get(m)} > baseline ceiling {floor}")
            elif got.get(m, -1.0) < floor:
                problems.append(f"{key}: {m} {got.get(m)} < baseline {floor}")
    return problems


def load(path: Path) -> dict[str, Any]:
    """Read a baseline file."""
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc
