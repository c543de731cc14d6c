"""Cluster layout, validation and the command lines it produces (no root needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cluster import ray_nodes, redis_ha
from benchmarks.cluster.spec import MASTER_NAME, SERVE_NODE, STREAM_NODE, ClusterSpec, Timings


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, None),
        ({"prefix": "a"}, "prefix"),
        ({"prefix": "Cscl"}, "prefix"),
        ({"prefix": "cs-x"}, "prefix"),
        ({"prefix": "abcdefg"}, "prefix"),
        ({"subnet": "8.8.8.0/24"}, "private"),
        ({"subnet": "10.213.0.0/25"}, "at least a /24"),
        ({"subnet": "10.213.0.1/24"}, "host bits"),
        ({"stream_nodes": 10}, "stream_nodes"),
        ({"serve_nodes": -1}, "serve_nodes"),
        ({"sentinels": 0}, "sentinels"),
        ({"object_store_mb": 64}, "object_store_mb"),
        ({"run_root": "/tmp/a-much-too-long-run-folder"}, "too long"),
    ],
)
def test_spec_validation(kwargs: dict[str, object], error: str | None) -> None:
    if error is None:
        ClusterSpec(**kwargs)  # type: ignore[arg-type]
        return
    with pytest.raises(ValueError, match=error):
        ClusterSpec(**kwargs)  # type: ignore[arg-type]


def test_default_layout() -> None:
    spec = ClusterSpec()
    hosts = {h.name: h for h in spec.hosts}
    assert list(hosts) == [
        "head",
        "stream1",
        "stream2",
        "redis1",
        "redis2",
        "sent1",
        "sent2",
        "sent3",
        "client",
    ]
    assert hosts["head"].ip == "10.213.0.2" and hosts["head"].resources == {SERVE_NODE: 1.0}
    assert hosts["stream2"].resources == {STREAM_NODE: 1.0}
    assert spec.bridge_ip == "10.213.0.1"
    assert spec.gcs_address == "10.213.0.2:6379"
    assert spec.sentinel_addresses == [(f"10.213.0.{30 + i}", 26379) for i in (1, 2, 3)]
    assert spec.quorum == 2
    assert spec.root == Path("/tmp/cscl")
    assert len({h.ip for h in spec.hosts}) == len(spec.hosts)


def test_largest_layout_fits_interface_names() -> None:
    spec = ClusterSpec(prefix="abcdef", stream_nodes=9, serve_nodes=9, sentinels=9)
    names = [spec.ns(h.name) for h in spec.hosts] + [spec.bridge]
    assert max(len(n) for n in names) <= 15
    assert len({h.ip for h in spec.hosts}) == len(spec.hosts)
    assert spec.quorum == 5


def test_unknown_host_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="stream1"):
        ClusterSpec().host("worker1")


def test_spec_round_trips_through_state_json() -> None:
    spec = ClusterSpec(prefix="cst3", subnet="10.213.103.0/24", timings=Timings(1, 2, 3, 4, 5))
    again = ClusterSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    with pytest.raises(TypeError):
        ClusterSpec.from_json({**spec.to_json(), "surprise": 1})


def test_ray_start_command_lines() -> None:
    spec = ClusterSpec()
    head = ray_nodes.start_argv(spec, spec.host("head"))
    assert "--head" in head and "--include-dashboard=false" in head
    assert "--node-ip-address=10.213.0.2" in head and "--port=6379" in head
    assert '--resources={"serve_node": 1.0}' in head
    assert "--temp-dir=/tmp/cscl/head" in head
    worker = ray_nodes.start_argv(spec, spec.host("stream1"))
    assert "--address=10.213.0.2:6379" in worker and "--head" not in worker
    assert "--node-ip-address=10.213.0.11" in worker
    assert '--resources={"stream_node": 1.0}' in worker


def test_ray_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    spec = ClusterSpec(timings=Timings(ray_health_check_period_ms=700))
    node = ray_nodes.ray_env(spec)
    # the same private token on every node: Ray 2.60 only reads ~/.ray on the head
    assert node["RAY_AUTH_MODE"] == "token"
    assert node["RAY_AUTH_TOKEN_PATH"] == "/tmp/cscl/ray_token"
    assert node["RAY_health_check_period_ms"] == "700"
    assert "RAY_ADDRESS" not in node  # ray start must not see a stray address
    assert ray_nodes.ray_env(spec, driver=True)["RAY_ADDRESS"] == "10.213.0.2:6379"
    assert ray_nodes.driver_init_kwargs(spec, spec.host("stream2")) == {
        "address": "10.213.0.2:6379",
        "_node_ip_address": "10.213.0.12",
    }


def test_redis_and_sentinel_configs(tmp_path: Path) -> None:
    spec = ClusterSpec(timings=Timings(sentinel_down_after_ms=1500))
    conf = redis_ha.redis_conf(spec, spec.host("redis2"), tmp_path / "r").read_text()
    assert "bind 10.213.0.22 127.0.0.1" in conf and "appendonly yes" in conf
    assert "replica-read-only yes" in conf
    sconf = redis_ha.sentinel_conf(
        spec, spec.host("sent2"), tmp_path / "s", spec.host("redis1")
    ).read_text()
    assert f"sentinel monitor {MASTER_NAME} 10.213.0.21 6379 2" in sconf
    assert f"sentinel down-after-milliseconds {MASTER_NAME} 1500" in sconf
    assert "bind 10.213.0.32 127.0.0.1" in sconf


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--prefix", "zq9"], "no cluster with prefix 'zq9' is up"),
        (["kill", "stream1", "--prefix", "zq9"], "no cluster with prefix 'zq9' is up"),
        (["up", "--prefix", "Bad!"], "prefix 'Bad!'"),
    ],
)
def test_cli_reports_bad_requests(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.cluster.cli import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err
