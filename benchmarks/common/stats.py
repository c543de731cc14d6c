"""Latency statistics."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def latency_summary(values_ms: Iterable[float]) -> dict[str, float | int | None]:
    """Summarise latencies in milliseconds.

    Args:
        values_ms: Latency samples in milliseconds.

    Returns:
        ``count``, ``mean``, ``p50``, ``p90``, ``p99``, ``max`` (milliseconds, rounded to
        0.01). Statistics are ``None`` when there are no samples.
    """
    arr = np.asarray(list(values_ms), dtype=np.float64)
    if arr.size == 0:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "count": int(arr.size),
        "mean": round(float(arr.mean()), 2),
        "p50": round(float(p50), 2),
        "p90": round(float(p90), 2),
        "p99": round(float(p99), 2),
        "max": round(float(arr.max()), 2),
    }
