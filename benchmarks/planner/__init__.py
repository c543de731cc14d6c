"""Capacity planner: GPUs, Triton, Ray nodes, Redis shards, bandwidth and CPU for a fleet.

``citysight plan`` is wired to :func:`benchmarks.planner.cli.main`; the arithmetic lives in
:mod:`benchmarks.planner.model`.
"""

from benchmarks.gpus import PUBLISHED, Source
from benchmarks.planner.model import (
    DecodeMode,
    Measurements,
    Plan,
    PlanError,
    PlanInput,
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
