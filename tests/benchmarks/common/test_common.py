"""Shared benchmark helpers: latency stats, process sampling, plots."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from benchmarks.common.plot import plot_panels
from benchmarks.common.procmon import ProcessSampler, children_of
from benchmarks.common.stats import latency_summary


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {"count": 0, "p50": None, "p99": None, "max": None}),
        ([5.0], {"count": 1, "p50": 5.0, "p99": 5.0, "max": 5.0}),
        (list(range(1, 101)), {"count": 100, "p50": 50.5, "max": 100.0}),
    ],
)
def test_latency_summary(values: list[float], expected: dict[str, object]) -> None:
    got = latency_summary(values)
    for k, v in expected.items():
        assert got[k] == v


def test_sampler_sees_cpu_of_a_busy_process() -> None:
    sampler = ProcessSampler({"me": lambda: [os.getpid()], "none": lambda: []}, 0.1).start()
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        sum(i * i for i in range(1000))
    sampler.stop()
    s = sampler.summary()
    assert s["me"]["cpu_pct_max"] > 1  # busy on a shared, loaded machine
    assert s["me"]["rss_mb_max"] > 10
    assert s["none"]["rss_mb_max"] == 0
    assert os.getpid() in children_of(os.getpid())


def test_plot_writes_png(tmp_path: Path) -> None:
    out = plot_panels(
        tmp_path / "p.png",
        "t",
        [("ms", [("p99", [0, 1, 2], [1.0, None, 3.0])]), ("rate", [])],
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
