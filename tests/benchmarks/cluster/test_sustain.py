"""The cameras-sustained search and its verdicts, on a fake capacity (no cluster, no root)."""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest

from benchmarks.cluster import sustain
from benchmarks.cluster.sustain import Criteria, Limits, Step, judge, search


class FakeCluster:
    """Keeps up with ``capacity`` cameras; each step takes ``step_s`` of a fake clock."""

    def __init__(self, capacity: int, step_s: float = 10.0, noisy: set[int] | None = None):
        self.capacity = capacity
        self.step_s = step_s
        self.noisy = noisy or set()
        self.now = 0.0
        self.tried: list[int] = []

    def clock(self) -> float:
        return self.now

    def measure(self, c: int) -> Step:
        self.tried.append(c)
        self.now += self.step_s
        offered = 2.0 * c
        # beyond capacity the consumer keeps consuming only what it can
        consumed = min(offered, 2.0 * self.capacity)
        if c in self.noisy:  # a bad moment of a shared machine
            consumed = 0.5 * offered
        s = Step(
            cameras=c,
            offered_per_s=offered,
            published_per_s=offered,
            consumed_per_s=consumed,
            lag_s=0.1 if consumed >= offered else 5.0,
            p99_ms=50.0,
            alerts=20,
        )
        return judge(s, Criteria())


# the bounds these cases were worked out for (the bench's defaults start higher)
L = Limits(start=8, max_cameras=256, resolution=4, max_steps=10, budget_s=300.0)


@pytest.mark.parametrize(
    ("capacity", "limits", "sustained", "stopped"),
    [
        # doubling 8, 16, 32, 64 (fails), then bisection 48, 56 (fails), 52 (fails)
        (50, L, 48, "resolved"),
        (8, L, 8, "resolved"),
        # the bench's own bounds: 32 .. 512 doubling, then bisection to within 10 %
        (300, Limits(), 288, "resolved"),
        (1000, L, 256, "max_cameras"),
        # the cap is not a power of two: doubling stops at it
        (1000, replace(L, max_cameras=100), 100, "max_cameras"),
        # not even the start: bisect below it
        (3, replace(L, resolution=1), 3, "resolved"),
        (0, replace(L, resolution=1), 0, "resolved"),
        (50, replace(L, max_steps=3), 32, "max_steps"),
        # 10 s steps, 35 s: the fourth step would overrun
        (50, replace(L, budget_s=35.0), 32, "budget"),
    ],
)
def test_search_finds_the_capacity(
    capacity: int, limits: Limits, sustained: int, stopped: str
) -> None:
    fake = FakeCluster(capacity)
    res = search(fake.measure, limits, clock=fake.clock)
    assert res.cameras_sustained == sustained
    assert res.stopped == stopped
    assert len(res.steps) <= limits.max_steps
    assert [s.cameras for s in res.steps] == fake.tried
    # what it reports kept up, and nothing above it did (within what it tried)
    if sustained:
        assert any(s.cameras == sustained and s.kept_up for s in res.steps)
    assert not any(s.kept_up and s.cameras > sustained for s in res.steps)
    if stopped == "resolved" and res.first_failed is not None:
        assert res.first_failed - sustained <= max(limits.resolution, int(0.1 * sustained), 1)
        assert sustained <= capacity < res.first_failed


def test_doubling_then_bisection_steps() -> None:
    fake = FakeCluster(50)
    search(fake.measure, L, clock=fake.clock)
    assert fake.tried == [8, 16, 32, 64, 48, 56, 52]


def test_noisy_step_never_reports_more_than_kept_up() -> None:
    # 32 fails by noise although 48 would keep up: the search reports 16..32, never above
    fake = FakeCluster(50, noisy={32})
    res = search(fake.measure, L, clock=fake.clock)
    assert res.first_failed == 32
    assert 16 <= res.cameras_sustained < 32


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"start": 0}, "start"),
        ({"start": 16, "max_cameras": 8}, "start"),
        ({"resolution": 0}, "resolution"),
        ({"max_steps": 0}, "max_steps"),
        ({"budget_s": 0}, "budget_s"),
    ],
)
def test_limits_validation(kwargs: dict[str, float], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Limits(**kwargs)  # type: ignore[arg-type]


def _step(**kw: float) -> Step:
    base: dict[str, float] = {
        "offered_per_s": 100.0,
        "published_per_s": 100.0,
        "consumed_per_s": 99.0,
        "lag_s": 0.2,
        "p99_ms": 80.0,
        "alerts": 12,
    }
    base.update(kw)
    return Step(cameras=50, **base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "kept_up", "why"),
    [
        ({}, True, ""),
        ({"published_per_s": 80.0}, False, "published 80/s < 95/s"),
        ({"consumed_per_s": 90.0}, False, "consumed 90/s < 95/s"),
        ({"lag_s": 2.5}, False, "lag 2.5 s > 2 s"),
        ({"p99_ms": 1500.0}, False, "p99 1500 ms > 1000 ms"),
        # too few alerts to judge latency: a bound not shown to hold does not hold
        ({"p99_ms": 80.0, "alerts": 2}, False, "latency not judged: 2 alerts < 5"),
        ({"p99_ms": None, "alerts": 0}, False, "latency not judged: 0 alerts < 5"),
    ],
)
def test_judge(kw: dict[str, float], kept_up: bool, why: str) -> None:
    s = judge(_step(**kw), Criteria())
    assert s.kept_up is kept_up
    if why:
        assert any(why in w for w in s.why), s.why
    else:
        assert s.why == []


def test_p99_nearest_rank() -> None:
    assert sustain.p99([]) is None
    assert sustain.p99([5.0]) == 5.0
    assert sustain.p99([float(i) for i in range(1, 101)]) == 99.0


@pytest.mark.parametrize(
    ("measured", "stopped", "planned", "verdict"),
    [
        (100, "resolved", 110, "right within 25 %"),
        (100, "resolved", 1750, "wrong: it sizes 17.5x"),
        (256, "max_cameras", 1750, "at least 256"),
        (0, "resolved", 1750, "no comparison"),
    ],
)
def test_vs_planner(measured: int, stopped: str, planned: int, verdict: str) -> None:
    out = sustain.vs_planner(measured, stopped, {"cameras": planned})
    assert verdict in out["verdict"]
    assert out["measured"] == measured and out["planned"] == planned


def test_planner_prediction_is_the_largest_fleet_within_the_layout() -> None:
    from benchmarks.planner.cli import DEFAULT_RESULTS_DIR, load_measurements
    from benchmarks.planner.model import PlanInput, plan

    pred = sustain.planner_prediction(2.0, consumers=1)
    c = pred["cameras"]
    meas = load_measurements(DEFAULT_RESULTS_DIR)
    at = plan(PlanInput.model_validate({"cameras": c, "analytics_fps": 2.0}), meas)
    over = plan(PlanInput.model_validate({"cameras": c + 1, "analytics_fps": 2.0}), meas)
    assert at.rules_cpu_cores.value == 1 and at.redis_shards.value == 1
    assert over.rules_cpu_cores.value > 1 or over.redis_shards.value > 1
    assert pred["limited_by"] == "rules_cpu_cores"


def test_bench_options_and_results_file(tmp_path: object) -> None:
    from pathlib import Path

    from benchmarks.cluster.bench import build_parser

    out = Path(str(tmp_path)) / "sustain.json"
    args = build_parser().parse_args(
        ["--sustain", "--max-cameras", "64", "--sustain-out", str(out)]
    )
    assert args.sustain and args.max_cameras == 64
    sustain.write_results({"nodes": 4, "cameras_sustained": 40, "sustain": {"steps": []},
                           "faults": []}, args)  # fmt: skip
    import json

    assert json.loads(out.read_text()) == {"nodes": 4, "cameras_sustained": 40,
                                           "sustain": {"steps": []}}  # fmt: skip
    # the search is on by default (the command reports cameras sustained)
    assert build_parser().parse_args([]).sustain
    # with --no-sustain nothing is written
    args2 = build_parser().parse_args(
        ["--no-sustain", "--sustain-out", str(tmp_path) + "/none.json"]
    )
    sustain.write_results({"cameras_sustained": 1, "sustain": {}}, args2)
    assert not (Path(str(tmp_path)) / "none.json").exists()
    assert isinstance(args2, argparse.Namespace) and not args2.sustain


def test_search_config_is_the_city_with_short_cooldowns() -> None:
    from benchmarks.cluster.city import bench_config

    spec = {"cameras": 6, "shards": 4, "sentinels": ["10.213.0.31:26379"], "master": "citysight",
            "alert_replicas": 1, "alert_wait_ms": 1000, "workers": 2}  # fmt: skip
    city, cfg = bench_config(spec), sustain.sustain_config(spec)
    assert [r.id for r in cfg.rules] == [r.id for r in city.rules]
    assert all(r.cooldown_s > sustain.COOLDOWN_S for r in city.rules)
    assert all(r.cooldown_s == sustain.COOLDOWN_S for r in cfg.rules)
    assert cfg.services.redis == city.services.redis and len(cfg.cameras) == 6
