"""infra/k8s from the same truth as the namespace cluster (no root, no cluster).

Two checks: the committed manifests equal what ``python -m benchmarks.cluster.manifests``
generates (so nobody edits a generated value by hand), and, independently of the
generator, every value parsed from the committed YAML equals what the harness itself
configures on its hosts (``ray start`` arguments, ``redis.conf``, ``sentinel.conf``, the
Ray environment, the bench's city config).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.cluster import manifests, ray_nodes, redis_ha
from benchmarks.cluster.manifests import K8S, TRUTH, ManifestError, generate, render_regions
from benchmarks.cluster.spec import (
    MASTER_NAME,
    REDIS,
    SENTINEL,
    SERVE_NODE,
    STREAM_NODE,
    ClusterSpec,
    Timings,
)


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _find(name: str, kind: str, obj: str) -> dict[str, Any]:
    (doc,) = [d for d in _docs(name) if d["kind"] == kind and d["metadata"]["name"] == obj]
    return doc


def _cluster_config() -> dict[str, Any]:
    text = _find("configmap.yaml", "ConfigMap", "citysight-config")["data"]["citysight.yaml"]
    return dict(yaml.safe_load(text))


# --------------------------------------------------------------------------- generated


@pytest.mark.parametrize("name", sorted(generate()))
def test_committed_manifests_are_the_generated_ones(name: str) -> None:
    assert (K8S / name).read_text() == generate()[name], (
        f"infra/k8s/{name} is stale: run `python -m benchmarks.cluster.manifests`"
    )


def test_check_flags_a_hand_edit_and_the_generator_repairs_it(tmp_path: Path) -> None:
    k8s = tmp_path / "k8s"
    shutil.copytree(K8S, k8s)
    assert manifests.main(["--out", str(k8s), "--check"]) == 0
    path = k8s / "configmap.yaml"
    path.write_text(path.read_text().replace("alert_replicas: 1", "alert_replicas: 0"))
    (k8s / "sentinel.yaml").unlink()
    assert manifests.main(["--out", str(k8s), "--check"]) == 1
    assert manifests.main(["--out", str(k8s)]) == 0
    assert "alert_replicas: 1" in path.read_text() and (k8s / "sentinel.yaml").exists()
    assert manifests.main(["--out", str(k8s), "--check"]) == 0


def test_a_changed_truth_changes_the_manifests() -> None:
    """The generated files follow the spec: a different timing is a different file."""
    slower = ClusterSpec(serve_nodes=1, timings=Timings(sentinel_down_after_ms=5000))
    other = generate(K8S, slower)
    assert "down-after-milliseconds citysight 5000" in other["sentinel.yaml"]
    assert other["sentinel.yaml"] != (K8S / "sentinel.yaml").read_text()
    more = generate(K8S, ClusterSpec(serve_nodes=1, sentinels=5))
    assert more["configmap.yaml"].count("redis-sentinel-4.") == 1


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a: 1\n# >>> generated (redis-replicas)\nb: 2\n", "no end marker"),
        ("# >>> generated (nope)\n# <<< generated (nope)\n", "unknown region"),
        (
            "# >>> generated (redis-replicas)\n# >>> generated (ray-health)\n"
            "# <<< generated (ray-health)\n# <<< generated (redis-replicas)\n",
            "opens another",
        ),
    ],
)
def test_malformed_regions_are_refused(text: str, error: str) -> None:
    ctx = manifests.Context((K8S / "configmap.yaml").read_text())
    with pytest.raises(ManifestError, match=error):
        render_regions(text, TRUTH, ctx, where="x.yaml")


def test_region_keeps_its_indent_and_the_hand_written_rest() -> None:
    ctx = manifests.Context((K8S / "configmap.yaml").read_text())
    text = (
        "keep: me\nspec:\n  # >>> generated (redis-replicas) x\n  stale: 9\n"
        "  # <<< generated (redis-replicas)\n  more: 1\n"
    )
    out = render_regions(text, TRUTH, ctx)
    assert yaml.safe_load(out) == {"keep": "me", "spec": {"replicas": 2, "more": 1}}


# --------------------------------------------------------------------------- checked


def _harness_resources(host: str) -> dict[str, float]:
    argv = ray_nodes.start_argv(TRUTH, TRUTH.host(host))
    (arg,) = [a for a in argv if a.startswith("--resources=")]
    return dict(json.loads(arg.split("=", 1)[1]))


def _group_resources(params: dict[str, Any]) -> dict[str, float]:
    # KubeRay passes the string to `ray start --resources=`; it holds a JSON string
    return dict(json.loads(json.loads(params["resources"])))


def test_ray_groups_advertise_the_roles_the_harness_starts_its_nodes_with() -> None:
    cluster = _find("rayservice.yaml", "RayService", "citysight")["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    head = _group_resources(cluster["headGroupSpec"]["rayStartParams"])
    assert head == _harness_resources("head") == {SERVE_NODE: 1.0}
    stream = _group_resources(groups["stream-workers"]["rayStartParams"])
    assert stream == _harness_resources("stream1") == {STREAM_NODE: 1.0}
    serve = _group_resources(groups["serve-workers"]["rayStartParams"])
    assert serve == _harness_resources("serve1") == {SERVE_NODE: 1.0}


def test_serve_replicas_and_stream_workers_ask_for_their_roles() -> None:
    rs = _find("rayservice.yaml", "RayService", "citysight")
    (app,) = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"]
    for dep in app["deployments"]:
        assert set(dep["ray_actor_options"]["resources"]) == {SERVE_NODE}, dep["name"]
    services = _cluster_config()["services"]
    assert services["ray"]["serve_resource"] == SERVE_NODE
    assert services["streams"]["node_resource"] == STREAM_NODE


def test_rules_replicas_take_one_serve_node_each_as_on_the_namespace_cluster() -> None:
    """The generated serveConfigV2 places replicas with the shares the city on the cluster
    deploys with (one rules consumer per serve node), and the Ray groups offer a serve node
    per consumer."""
    from benchmarks.cluster import city
    from citysight.app.serve_config import INGRESS_SHARE, RULES_SHARE

    assert city.INGRESS_SHARE is INGRESS_SHARE and city.RULES_SHARE is RULES_SHARE
    assert RULES_SHARE > 0.5  # two never fit one node
    rs = _find("rayservice.yaml", "RayService", "citysight")
    (app,) = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"]
    deps = app["deployments"]
    shares = {d["name"]: d["ray_actor_options"]["resources"][SERVE_NODE] for d in deps}
    rules = [n for n in shares if n.startswith("RulesConsumer")]
    assert rules and all(shares[n] == RULES_SHARE for n in rules)
    assert shares["Ingress"] == INGRESS_SHARE
    cluster = rs["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    serve_nodes = 1 + int(groups["serve-workers"]["replicas"])  # the head has serve_node: 1
    assert serve_nodes >= len(rules) == _cluster_config()["services"]["rules"]["consumers"]


def test_redis_section_is_the_one_the_city_on_the_cluster_runs() -> None:
    from benchmarks.cluster.bench import build_parser

    redis = _cluster_config()["services"]["redis"]
    n_sentinels = sum(1 for h in TRUTH.hosts if h.kind == SENTINEL)
    assert len(redis["sentinels"]) == n_sentinels == len(TRUTH.sentinel_addresses)
    assert all(s.endswith(f":{TRUTH.sentinel_port}") for s in redis["sentinels"])
    assert redis["master_name"] == MASTER_NAME
    assert redis["alert_replicas"] == build_parser().parse_args([]).alert_replicas >= 1
    assert "url" not in redis


def _sentinel_lines(text: str) -> dict[str, str]:
    """``sentinel <directive> <master> ...`` -> the rest, monitor's host left out."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "sentinel" and parts[2] == MASTER_NAME:
            rest = parts[3:]
            if parts[1] == "monitor":
                rest = rest[1:]  # the host: an IP here, a pod name there
            out[parts[1]] = " ".join(rest)
    return out


def test_sentinels_run_with_the_harness_settings(tmp_path: Path) -> None:
    hosts = {h.name: h for h in TRUTH.hosts}
    harness = redis_ha.sentinel_conf(TRUTH, hosts["sent1"], tmp_path, hosts["redis1"]).read_text()
    cm = _find("sentinel.yaml", "ConfigMap", "redis-sentinel-config")
    k8s = _sentinel_lines(cm["data"]["sentinel.conf"])
    assert k8s == _sentinel_lines(harness)
    t = TRUTH.timings
    assert k8s == {
        "monitor": f"{TRUTH.redis_port} {TRUTH.quorum}",
        "down-after-milliseconds": str(t.sentinel_down_after_ms),
        "failover-timeout": str(t.sentinel_failover_timeout_ms),
        "parallel-syncs": str(t.sentinel_parallel_syncs),
    }
    sts = _find("sentinel.yaml", "StatefulSet", "redis-sentinel")
    assert sts["spec"]["replicas"] == len(TRUTH.sentinel_addresses)
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert c["ports"] == [{"name": "sentinel", "containerPort": TRUTH.sentinel_port}]
    pdb = _find("sentinel.yaml", "PodDisruptionBudget", "redis-sentinel")
    assert pdb["spec"]["minAvailable"] == TRUTH.quorum


def test_redis_servers_run_with_the_harness_settings(tmp_path: Path) -> None:
    hosts = {h.name: h for h in TRUTH.hosts}
    harness = redis_ha.redis_conf(TRUTH, hosts["redis1"], tmp_path).read_text().splitlines()
    cm = _find("redis.yaml", "ConfigMap", "redis-config")["data"]
    k8s = cm["redis.conf"].splitlines()
    for line in redis_ha.DURABILITY:
        assert line in harness and line in k8s, line
    sts = _find("redis.yaml", "StatefulSet", "redis")
    assert sts["spec"]["replicas"] == sum(1 for h in TRUTH.hosts if h.kind == REDIS)
    (c, *_) = sts["spec"]["template"]["spec"]["containers"]
    assert {"name": "redis", "containerPort": TRUTH.redis_port} in c["ports"]
    start = cm["start.sh"]
    assert f"get-master-addr-by-name {MASTER_NAME}" in start and "--replicaof" in start


def test_ray_health_checks_are_the_harness_ones() -> None:
    env = _find("configmap.yaml", "ConfigMap", "citysight-env")["data"]
    harness = ray_nodes.ray_env(TRUTH)
    names = [f.name for f in dataclasses.fields(Timings) if f.name.startswith("ray_")]
    assert len(names) == 3
    for key in ("period_ms", "timeout_ms", "failure_threshold"):
        var = f"RAY_health_check_{key}"
        assert env[var] == harness[var] == str(getattr(TRUTH.timings, f"ray_health_check_{key}"))
    # the pods that run a GCS or a raylet read it
    rs = _find("rayservice.yaml", "RayService", "citysight")["spec"]["rayClusterConfig"]
    for group in [rs["headGroupSpec"], *rs["workerGroupSpecs"]]:
        (c,) = group["template"]["spec"]["containers"]
        assert {"configMapRef": {"name": "citysight-env"}} in c["envFrom"]
