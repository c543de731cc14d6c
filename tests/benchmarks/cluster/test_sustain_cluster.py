"""The cameras-sustained search on a real namespace cluster, in a small form (as root).

Two short steps (4 then 8 cameras) on the fixture's cluster: the camera workers on the
stream nodes publish what is offered, the real rules consumer consumes it, the subscriber
in the ``client`` namespace receives alerts, and Redis is empty afterwards (the city that
follows a search starts clean).
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.cluster import redis_ha
from benchmarks.cluster.harness import Cluster
from benchmarks.cluster.spec import MASTER_NAME
from benchmarks.cluster.sustain import Criteria, Limits, run_on_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def test_search_runs_on_the_cluster_and_leaves_redis_empty(cluster: Cluster) -> None:
    spec = cluster.spec
    city: dict[str, Any] = {
        "cameras": 8, "fps": 2.0, "shards": 2, "workers": 2,
        # many episodes, so a 5 s window of 4 cameras has alerts to time
        "episodes_per_cam_h": 1800.0, "alert_replicas": 1, "alert_wait_ms": 1000,
        "master": MASTER_NAME, "rules_ip": None,
        "sentinels": [f"{ip}:{port}" for ip, port in spec.sentinel_addresses],
    }  # fmt: skip
    limits = Limits(start=4, max_cameras=8, resolution=4, max_steps=2, budget_s=240)
    # loose bounds: this checks the machinery, the bench measures the capacity
    res = run_on_cluster(
        cluster, city, limits, Criteria(max_p99_ms=10_000, max_lag_s=10, min_alerts=1),
        window_s=5.0,
    )  # fmt: skip
    steps = res["steps"]
    assert [s["cameras"] for s in steps] == [4, 8][: len(steps)]
    for s in steps:
        assert s["published_per_s"] >= 0.9 * s["offered_per_s"], s
        assert s["consumed_per_s"] > 0, s
        assert s["kept_up"] == (not s["why"]), s
    assert sum(s["alerts"] for s in steps) > 0, steps
    assert res["cameras_sustained"] in (0, 4, 8)
    if res["cameras_sustained"] == 8:
        assert res["stopped"] == "max_cameras"
    sentinel = redis_ha.sentinel_client(spec)
    r = sentinel.master_for(MASTER_NAME, socket_timeout=2)  # type: ignore[no-untyped-call]
    assert r.dbsize() == 0
