"""Rules consumers as Ray Serve replicas on serve nodes, one killed (as root).

``citysight bench cluster`` on 3 Ray nodes (the head and ``serve1``, both ``serve_node``;
one stream node): the project's Serve app puts one rules-consumer replica on each serve
host and a proxy on each; a WebSocket subscriber in the ``client`` namespace reads the
feed through ``serve1``. ``serve1`` hangs, then dies: the replica on the head (another
shard group, another consumer name) claims the dead consumer's pending entries, Serve
restarts the dead replica once its host is back, the subscriber resumes through the head
with ``last_id``, and not one acknowledged alert is lost or stored twice.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from clusterkit import need_netns

from benchmarks.cluster import bench
from benchmarks.cluster.harness import Cluster
from benchmarks.cluster.spec import ClusterSpec

# bring-up, Serve's deployment, the fault, a restore: minutes on 2 loaded cores
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]

# outside the fixtures' slots (clusterkit.TEST_SLOTS) and test_city.py's prefix
PREFIX, SUBNET = "cstv", "10.213.111.0/24"


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    """One small run: head + serve1 + stream1, 8 cameras, the serve-node fault."""
    need_netns()
    args = bench.build_parser().parse_args(
        # 5 shards: the 8 cameras split 4/4 between the two shard groups
        ["--nodes", "3", "--serve-nodes", "1", "--cameras", "8", "--shards", "5", "--warmup", "8",
         "--settle", "3", "--faults", "serve_node", "--timeout", "45",
         "--prefix", PREFIX, "--subnet", SUBNET, "--out", "", "--no-sustain"]
    )  # fmt: skip
    try:
        res = bench.run(args)
        print(json.dumps({k: res.get(k) for k in ("placement", "faults", "alerts", "subscriber",
                                                  "latency_ms_steady")}))  # fmt: skip
        return res
    finally:
        Cluster(ClusterSpec(prefix=PREFIX, subnet=SUBNET)).down(force=True)


def _fault(result: dict[str, Any]) -> dict[str, Any]:
    (f,) = result["faults"]
    assert "error" not in f, f
    return f


def test_two_rules_replicas_on_different_serve_hosts(result: dict[str, Any]) -> None:
    hosts = [p["host"] for p in result["placement"].values()]
    assert sorted(hosts) == ["head", "serve1"], result["placement"]
    assert len({p["consumer"] for p in result["placement"].values()}) == 2
    assert "serve1" in result["ingress"] and "head" in result["ingress"]


def test_another_consumer_claims_the_dead_ones_pending_entries(result: dict[str, Any]) -> None:
    f = _fault(result)
    assert f["host"] == "serve1"
    assert f["pending_at_kill"] > 0, "nothing was pending at the kill: the claim was not tested"
    assert f["claimed_by_other"] >= f["pending_at_kill"], f
    assert 0 < f["claimed_s"] < 30, f
    assert f["restarted_s"] > 0 and f["rescheduled_to"], f


def test_the_subscriber_resumes_through_another_ingress(result: dict[str, Any]) -> None:
    f = _fault(result)
    assert f.get("subscriber_resumed_via") == "head", f
    sub = result["subscriber"]
    assert sub["alerts"] > 0 and sub["missing"] == 0, sub


def test_no_acknowledged_alert_is_lost_or_duplicated(result: dict[str, Any]) -> None:
    alerts = result["alerts"]
    assert alerts["acked"] > 0, "the run acknowledged no alert: nothing was checked"
    assert alerts["lost"] == 0 and alerts["duplicates"] == 0, alerts


def test_the_run_left_nothing_behind(result: dict[str, Any]) -> None:
    left = Cluster(ClusterSpec(prefix=PREFIX, subnet=SUBNET)).leftovers()
    assert not any(left.values()), left
