"""A real cluster in network namespaces: Ray placement, a node kill, a Redis failover.

One cluster per module (bring-up takes ~30 s on 2 cores); the tests run in file order and
the last one tears it down and checks that nothing with its prefix is left.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from benchmarks.cluster import redis_ha
from benchmarks.cluster.harness import Cluster
from benchmarks.cluster.spec import MASTER_NAME, SERVE_NODE, STREAM_NODE

pytestmark = pytest.mark.cluster


def _ips(c: Cluster, kind: str) -> set[str]:
    return {h.ip for h in c.spec.hosts if h.kind == kind}


def test_every_host_is_up_with_its_role(cluster: Cluster) -> None:
    print(f"bring-up: { {k: round(v, 2) for k, v in cluster.timings.items()} }")
    st = cluster.status()
    assert st["up"], st
    by_name = {n["name"]: n for n in st["nodes"]}
    assert by_name["head"]["ray"]["resources"][SERVE_NODE] == 1.0
    for name in ("stream1", "stream2"):
        res = by_name[name]["ray"]["resources"]
        assert res[STREAM_NODE] == 1.0 and SERVE_NODE not in res
    # each host has its own address on the cluster's /24
    assert len({n["ip"] for n in st["nodes"]}) == len(st["nodes"])
    r = st["redis"]
    assert r["primary"] == f"{cluster.spec.host('redis1').ip}:6379"
    assert r["agree"] and r["known_sentinels"] == 3
    assert [x["link"] for x in r["replicas"]] == ["ok"]


def test_actors_land_on_the_nodes_with_their_resource(cluster: Cluster) -> None:
    with cluster.driver() as d:
        streams = d.place(2, STREAM_NODE)
        serve = d.place(1, SERVE_NODE)
    assert {a["ip"] for a in streams} == _ips(cluster, "ray-worker")
    assert [a["ip"] for a in serve] == [cluster.spec.host("head").ip]


def test_a_driver_outside_any_raylet_namespace_is_refused(cluster: Cluster) -> None:
    with pytest.raises(Exception, match="runs no raylet"), cluster.driver("client"):
        pass


def test_killed_stream_node_is_seen_dead_and_work_moves(cluster: Cluster) -> None:
    t = cluster.spec.timings
    # the GCS declares a node dead after `threshold` failed checks; a SIGKILLed raylet
    # refuses at once, so this bound has room for a slow, shared machine
    bound_s = (
        t.ray_health_check_failure_threshold
        * (t.ray_health_check_period_ms + t.ray_health_check_timeout_ms)
        / 1000
        + 5
    )
    victim, survivor = cluster.spec.host("stream1"), cluster.spec.host("stream2")
    with cluster.driver() as d:
        before = d.place(2, STREAM_NODE)
        assert {a["ip"] for a in before} == {victim.ip, survivor.ip}
        t_kill = cluster.kill_node("stream1")
        dead_at = d.wait_dead(victim.ip, timeout_s=60)
        detected_s = dead_at - t_kill
        alive = {a["ip"]: a["alive"] for a in d.check()}
        fresh = d.place(2, STREAM_NODE)
    print(f"stream node kill: Ray saw it dead after {detected_s:.2f} s")
    assert detected_s < bound_s
    assert alive == {victim.ip: False, survivor.ip: True}
    assert {a["ip"] for a in fresh} == {survivor.ip}
    st = cluster.status()
    node = next(n for n in st["nodes"] if n["name"] == "stream1")
    assert not node["alive"] and not node["ray"]["alive"] and not st["up"]


def test_restored_stream_node_rejoins(cluster: Cluster) -> None:
    cluster.restore_node("stream1")
    nodes = cluster.wait_ray_nodes(timeout_s=60)
    ip = cluster.spec.host("stream1").ip
    mine = [n for n in nodes if n["ip"] == ip]
    assert [n["alive"] for n in mine].count(True) == 1 and len(mine) == 2  # new id, old dead
    with cluster.driver() as d:
        assert {a["ip"] for a in d.place(2, STREAM_NODE)} == _ips(cluster, "ray-worker")


def _sentinel_master(c: Cluster) -> Any:
    return redis_ha.sentinel_client(c.spec, timeout_s=2.0).master_for(
        MASTER_NAME, socket_timeout=2.0, decode_responses=True
    )


def test_redis_primary_kill_fails_over_through_sentinel(cluster: Cluster) -> None:
    m = _sentinel_master(cluster)
    m.set("citysight:test:replicated", "kept")
    # WAIT: acknowledged by the replica, so it must survive the primary's death
    assert m.execute_command("WAIT", 1, 2000) == 1
    m.close()
    res = cluster.measure_redis_failover(timeout_s=30)
    print(f"redis failover: {res}")
    assert res["killed"] == "redis1" and res["promoted"] == "redis2"
    assert res["writes_resumed_s"] < 30
    assert res["sdown_s"] <= res["switch_master_s"] <= res["writes_resumed_s"] + 0.5
    m = _sentinel_master(cluster)
    assert m.get("citysight:test:replicated") == "kept"
    assert m.connection_pool.get_master_address()[0] == cluster.spec.host("redis2").ip
    m.close()


def test_restored_redis_comes_back_as_replica(cluster: Cluster) -> None:
    cluster.restore_node("redis1")
    t_end = time.monotonic() + 30
    while True:
        view = redis_ha.sentinel_view(cluster.spec)
        links = {x["address"]: (x["link"], x["flags"]) for x in view["replicas"]}
        if links.get(f"{cluster.spec.host('redis1').ip}:6379") == ("ok", "slave"):
            break
        assert time.monotonic() < t_end, view
        time.sleep(0.5)
    assert view["primary"] == f"{cluster.spec.host('redis2').ip}:6379"
    assert cluster.status()["up"]


def test_teardown_leaves_nothing(cluster: Cluster) -> None:
    res = cluster.down()
    print(f"teardown: {res['teardown_s']:.2f} s, removed {res['removed']}")
    assert len(res["removed"]["namespaces"]) == len(cluster.spec.hosts)
    assert cluster.leftovers() == {"namespaces": [], "links": [], "processes": [], "dirs": []}
