"""Accuracy baselines (norfair-style gate): floors per task and tier, checked in CI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS = ("precision", "recall", "f1", "text_exact")


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
            flat[f"{task}/{tier}"] = {m: float(v[m]) for m in METRICS if m in v}
    return flat


def make_baseline(result: dict[str, Any], margin: float = 0.03) -> dict[str, dict[str, float]]:
    """Floors slightly below the measured numbers (``margin`` absolute, rounded down)."""
    return {
        key: {m: max(0.0, math.floor((v - margin) * 100) / 100) for m, v in vals.items()}
        for key, vals in flatten(result).items()
    }


def check(result: dict[str, Any], baseline: dict[str, dict[str, float]]) -> list[str]:
    """Regressions: every metric below its floor, and every baselined entry not measured."""
    flat = flatten(result)
    problems = []
    for key, floors in sorted(baseline.items()):
        got = flat.get(key)
        if got is None:
            problems.append(f"{key}: not measured")
            continue
        for m, floor in floors.items():
            if got.get(m, -1.0) < floor:
                problems.append(f"{key}: {m} {got.get(m)} < baseline {floor}")
    return problems


def load(path: Path) -> dict[str, Any]:
    """Read a baseline file."""
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc
