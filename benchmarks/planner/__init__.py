"""Capacity planner: GPUs, Triton, Ray nodes, Redis shards, bandwidth and CPU for a fleet.

``citysight plan`` is wired to :func:`benchmarks.planner.cli.main`; the arithmetic lives in
:mod:`benchmarks.planner.model`.
"""

from benchmarks.planner.model import (
    PUBLISHED,
    DecodeMode,
    Measurements,
    Plan,
    PlanError,
    PlanInput,
    Source,
    plan,
)

__all__ = [
    "PUBLISHED",
    "DecodeMode",
    "Measurements",
    "Plan",
    "PlanError",
    "PlanInput",
    "Source",
    "plan",
]
