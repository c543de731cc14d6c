"""Offline validation of infra/: Kubernetes manifests, RayService, compose, monitoring.

Core Kubernetes objects are validated against the OpenAPI-derived JSON schemas bundled in
``kubernetes-validate`` (strict mode: unknown fields are errors). The RayService is checked
against ``infra/k8s/schemas/rayservice.schema.json`` (a hand-written subset of KubeRay's
CRD) with ``jsonschema``, and its pod templates against Kubernetes' PodTemplate schema.
Every validator has a negative case proving it can fail.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
K8S_VERSION = "1.30.0"  # oldest Kubernetes minor we support
RAYSERVICE_SCHEMA = K8S / "schemas" / "rayservice.schema.json"
COMPOSE = INFRA / "docker" / "docker-compose.gpu.yml"
PROMETHEUS = INFRA / "monitoring" / "prometheus.yml"
DASHBOARD = INFRA / "monitoring" / "grafana-dashboard.json"

# Which exporter each metric prefix comes from; whether a name is really exported is checked
# against real expositions (tests/serve_app/api/test_metrics.py for citysight_*,
# tests/inference/triton/test_server.py for Triton's nv_*).
METRIC_TOKEN = re.compile(r"\b((?:citysight|nv)_[a-zA-Z0-9_]+)\b")


# --------------------------------------------------------------------------- loading


def _yaml_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in {".yaml", ".yml"})


def _k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _find(kind: str, name: str) -> dict[str, Any]:
    for doc in _k8s_docs():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind}/{name} in infra/k8s")


def _rayservice() -> dict[str, Any]:
    return _find("RayService", "citysight")


# --------------------------------------------------------------------------- validators


def validate_k8s(doc: dict[str, Any]) -> None:
    """Validate one core Kubernetes object against the bundled OpenAPI schemas (strict)."""
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def validate_rayservice(doc: dict[str, Any]) -> None:
    """Validate a RayService: CRD subset schema, then each pod template as a PodTemplate."""
    schema = json.loads(RAYSERVICE_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(doc)
    cluster = doc["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    for group in groups:
        validate_k8s(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": group.get("groupName", "head")},
                "template": group["template"],
            }
        )
    serve = yaml.safe_load(doc["spec"]["serveConfigV2"])
    if not isinstance(serve, dict) or not serve.get("applications"):
        raise ValueError("serveConfigV2 has no applications")


def compose_errors(doc: dict[str, Any]) -> list[str]:
    """Structural checks of the single-GPU-node compose file; returns problems found."""
    errors: list[str] = []
    allowed_top = {"name", "services", "volumes", "networks", "configs", "secrets"}
    errors += [f"unknown top-level key {k!r}" for k in set(doc) - allowed_top]
    services = doc.get("services") or {}
    for required in ("redis", "triton", "citysight"):
        if required not in services:
            errors.append(f"missing service {required!r}")
    named_volumes = set(doc.get("volumes") or {})
    for name, svc in services.items():
        if not isinstance(svc, dict) or not (svc.get("image") or svc.get("build")):
            errors.append(f"{name}: needs image or build")
            continue
        deps = svc.get("depends_on") or {}
        errors += [f"{name}: depends_on unknown {d!r}" for d in deps if d not in services]
        for vol in svc.get("volumes") or []:
            source = str(vol).split(":", 1)[0]
            if not source.startswith((".", "/")) and source not in named_volumes:
                errors.append(f"{name}: undeclared named volume {source!r}")
        for port in svc.get("ports") or []:
            if not re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?\d+:\d+(/(tcp|udp))?", str(port)):
                errors.append(f"{name}: bad port mapping {port!r}")
    for gpu_service in ("triton", "citysight"):
        svc = services.get(gpu_service) or {}
        devices = (
            svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        )
        if not any(
            d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices
        ):
            errors.append(f"{gpu_service}: no nvidia GPU reservation")
    env = (services.get("citysight") or {}).get("environment") or {}
    if isinstance(env, list):
        env = dict(str(e).split("=", 1) for e in env)
    caps = set(str(env.get("NVIDIA_DRIVER_CAPABILITIES", "")).split(","))
    if not {"compute", "utility", "video"} <= caps:
        errors.append("citysight: NVIDIA_DRIVER_CAPABILITIES must include compute,utility,video")
    redis_cmd = " ".join(map(str, (services.get("redis") or {}).get("command") or []))
    if "--appendonly yes" not in redis_cmd:
        errors.append("redis: AOF (--appendonly yes) is off")
    return errors


def dashboard_errors(doc: dict[str, Any]) -> list[str]:
    """Check panels, ids, and that every query parses and names a citysight or Triton metric."""
    import promql_parser

    errors: list[str] = []
    panels = doc.get("panels")
    if not isinstance(panels, list) or not panels:
        return ["dashboard has no panels"]
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)):
        errors.append("duplicate panel ids")
    for panel in panels:
        if not panel.get("title") or not panel.get("targets"):
            errors.append(f"panel {panel.get('id')}: needs a title and targets")
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            try:
                promql_parser.parse(expr)
            except ValueError as exc:
                errors.append(f"panel {panel.get('title')!r}: query does not parse: {exc}")
            if not METRIC_TOKEN.search(expr):
                errors.append(f"panel {panel.get('title')!r}: query names no known metric")
    return errors


DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def prometheus_errors(doc: dict[str, Any]) -> list[str]:
    """Structural checks of prometheus.yml (no promtool offline)."""
    errors: list[str] = []
    allowed_top = {
        "global",
        "scrape_configs",
        "rule_files",
        "alerting",
        "remote_write",
        "remote_read",
        "scrape_config_files",
        "storage",
    }
    errors += [f"unknown top-level key {k!r}" for k in set(doc) - allowed_top]
    glob_cfg = doc.get("global") or {}
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        if key in glob_cfg and not DURATION.match(str(glob_cfg[key])):
            errors.append(f"global.{key}: bad duration {glob_cfg[key]!r}")
    jobs = doc.get("scrape_configs") or []
    names = [j.get("job_name") for j in jobs]
    if len(names) != len(set(names)):
        errors.append("duplicate job_name")
    for job in jobs:
        name = job.get("job_name")
        if not name:
            errors.append("scrape config without job_name")
        if not (job.get("static_configs") or job.get("kubernetes_sd_configs")):
            errors.append(f"{name}: no targets")
        for rc in job.get("relabel_configs") or []:
            action = rc.get("action", "replace")
            if action not in {"replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep"}:
                errors.append(f"{name}: bad relabel action {action!r}")
            try:
                re.compile(str(rc.get("regex", "(.*)")))
            except re.error as exc:
                errors.append(f"{name}: bad regex: {exc}")
    return errors


def prometheus_targets(doc: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """job -> (app.kubernetes.io/name, container port) from the keep relabel rules."""
    out: dict[str, tuple[str, int]] = {}
    for job in doc["scrape_configs"]:
        for rc in job.get("relabel_configs", []):
            if rc.get("action") == "keep":
                app, port = str(rc["regex"]).split(";")
                out[job["job_name"]] = (app, int(port))
    return out


def _pod_specs() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod labels, pod spec) of every workload in infra/k8s, RayService groups included."""
    for doc in _k8s_docs():
        if doc["kind"] in {"Deployment", "DaemonSet", "StatefulSet"}:
            tpl = doc["spec"]["template"]
            yield tpl["metadata"]["labels"], tpl["spec"]
        elif doc["kind"] == "RayService":
            cluster = doc["spec"]["rayClusterConfig"]
            for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
                yield group["template"]["metadata"]["labels"], group["template"]["spec"]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"


def _core_docs() -> list[dict[str, Any]]:
    return [d for d in _k8s_docs() if not d["apiVersion"].startswith("ray.io/")]


@pytest.mark.parametrize("doc", _core_docs(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_core_objects_match_kubernetes_schema(doc: dict[str, Any]) -> None:
    validate_k8s(doc)


def _broken_statefulset() -> dict[str, Any]:
    doc = copy.deepcopy(_find("StatefulSet", "redis"))
    doc["spec"]["replicas"] = "two"
    return doc


def _typo_daemonset() -> dict[str, Any]:
    doc = copy.deepcopy(_find("DaemonSet", "triton"))
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    return doc


@pytest.mark.parametrize(
    ("make_doc", "error"),
    [
        (lambda: _find("StatefulSet", "redis"), None),
        (_broken_statefulset, kubernetes_validate.ValidationError),
        (_typo_daemonset, kubernetes_validate.ValidationError),
    ],
)
def test_kubernetes_validator_rejects_broken(make_doc: Any, error: type[Exception] | None) -> None:
    if error is None:
        validate_k8s(make_doc())
    else:
        with pytest.raises(error):
            validate_k8s(make_doc())


def test_rayservice_matches_crd_schema() -> None:
    validate_rayservice(_rayservice())


def _mutate_rayservice(path: list[str | int], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_rayservice())
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


WORKER = ["spec", "rayClusterConfig", "workerGroupSpecs", 0]


@pytest.mark.parametrize(
    ("doc_factory", "error"),
    [
        # rayStartParams is map[string]string: an unquoted number is rejected
        (
            lambda: _mutate_rayservice([*WORKER, "rayStartParams", "num-gpus"], 1),
            jsonschema.ValidationError,
        ),
        (
            lambda: _mutate_rayservice(["spec", "serveConfigV3"], "x"),
            jsonschema.ValidationError,
        ),
        (
            lambda: _mutate_rayservice(["apiVersion"], "ray.io/v1alpha1"),
            jsonschema.ValidationError,
        ),
        # a broken pod template is caught by the Kubernetes schema
        (
            lambda: _mutate_rayservice([*WORKER, "template", "spec", "containerz"], []),
            kubernetes_validate.ValidationError,
        ),
        (lambda: _mutate_rayservice(["spec", "serveConfigV2"], "[]"), ValueError),
    ],
)
def test_rayservice_validator_rejects_broken(doc_factory: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        validate_rayservice(doc_factory())


def test_rayservice_stream_workers_on_gpu_nodes() -> None:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    (workers,) = [g for g in cluster["workerGroupSpecs"] if g["groupName"] == "stream-workers"]
    assert workers["rayStartParams"]["num-gpus"] == "1"
    pod = workers["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def _cluster_config() -> Any:
    """The citysight config that configmap.yaml mounts at /etc/citysight/citysight.yaml."""
    from citysight.config import parse_config

    text = _find("ConfigMap", "citysight-config")["data"]["citysight.yaml"]
    return parse_config(yaml.safe_load(text), "configmap.yaml citysight.yaml")


def test_cluster_config_is_a_valid_citysight_config() -> None:
    """Strict validation (unknown keys are errors): the pods would refuse a bad file."""
    cfg = _cluster_config()
    redis = cfg.services.redis
    # through sentinel.yaml's Sentinels, never a fixed primary (it changes on failover)
    assert redis.sentinels and not redis.url
    assert redis.password_env == "REDIS_PASSWORD"  # the Secret's variable
    assert cfg.services.inference.type == "triton" and cfg.services.inference.triton_url
    assert cfg.services.rules.consumers <= cfg.services.streams.shards


def test_control_process_runs_the_supervisor_without_serve() -> None:
    dep = _find("Deployment", "citysight-control")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["command"][:2] == ["citysight", "run"] and "--no-serve" in c["command"]
    assert c["command"][c["command"].index("--config") + 1] == "/etc/citysight/citysight.yaml"
    assert _cluster_config().services.ray.address.startswith("ray://citysight-head-svc.")
    assert any(e["name"] == "REDIS_PASSWORD" for e in c["env"])


def test_serve_config_v2_is_generated_from_the_cluster_config() -> None:
    from citysight.app.serve_config import build_serve_config

    embedded = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    assert embedded == build_serve_config(_cluster_config())
    (app,) = embedded["applications"]
    assert app["import_path"] == "serve_app.app:build_app"
    assert app["args"] == {"config_path": "/etc/citysight/citysight.yaml"}
    # WebSockets hold a slot each for their whole life (RECIPES.md): default 5 is too low.
    ingress = app["deployments"][0]
    assert ingress["name"] == "Ingress" and ingress["max_ongoing_requests"] >= 1000
    # One single-replica deployment per shard group: a camera's rule state in one place.
    rules = app["deployments"][1:]
    assert [d["name"] for d in rules] == ["RulesConsumer-0", "RulesConsumer-1"]
    assert all(d["num_replicas"] == 1 for d in rules)


def test_triton_daemonset() -> None:
    ds = _find("DaemonSet", "triton")
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    containers = {c["name"]: c for c in pod["containers"]}
    triton = containers["triton"]
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {m["mountPath"]: m["name"] for m in triton["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts["/models"]]
    assert "--model-repository=/models" in triton["args"]
    canary_cmd = containers["canary"]["readinessProbe"]["exec"]["command"]
    assert canary_cmd == ["citysight", "triton", "canary", "--url", "http://127.0.0.1:8000"]


def test_redis_is_replicated_with_aof() -> None:
    sts = _find("StatefulSet", "redis")
    assert sts["spec"]["replicas"] >= 2
    conf = _find("ConfigMap", "redis-config")["data"]["redis.conf"]
    assert re.search(r"^appendonly yes$", conf, re.MULTILINE)
    assert "--replicaof" in _find("ConfigMap", "redis-config")["data"]["start.sh"]


def test_services_select_existing_pods() -> None:
    pod_labels = [labels for labels, _ in _pod_specs()]
    for svc in (d for d in _k8s_docs() if d["kind"] == "Service"):
        selector = {
            k: v
            for k, v in svc["spec"]["selector"].items()
            if k != "statefulset.kubernetes.io/pod-name"  # set by the controller
        }
        assert any(selector.items() <= labels.items() for labels in pod_labels), svc["metadata"]


def test_pdbs_cover_workers_redis_and_triton() -> None:
    pod_labels = [labels for labels, _ in _pod_specs()]
    pdbs = [d for d in _k8s_docs() if d["kind"] == "PodDisruptionBudget"]
    covered = set()
    for pdb in pdbs:
        match = pdb["spec"]["selector"]["matchLabels"]
        hits = [lab for lab in pod_labels if match.items() <= lab.items()]
        assert hits, f"PDB {pdb['metadata']['name']} selects no pods"
        covered.update(
            lab.get("app.kubernetes.io/component") or lab["app.kubernetes.io/name"] for lab in hits
        )
    assert {"stream-worker", "redis", "triton"} <= covered


# ---- compose


def test_compose_file_is_valid() -> None:
    assert compose_errors(yaml.safe_load(COMPOSE.read_text())) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["services"].pop("triton"), "missing service 'triton'"),
        (
            lambda d: d["services"]["citysight"]["environment"].update(
                NVIDIA_DRIVER_CAPABILITIES="compute,utility"
            ),
            "NVIDIA_DRIVER_CAPABILITIES",
        ),
        (
            lambda d: d["services"]["citysight"]["depends_on"].update(postgres={}),
            "depends_on unknown 'postgres'",
        ),
        (lambda d: d["services"]["redis"]["volumes"].append("cache:/c"), "undeclared"),
        (lambda d: d["services"]["redis"].update(command=["redis-server"]), "AOF"),
        (lambda d: d.update(servics={}), "unknown top-level key"),
    ],
)
def test_compose_validator_rejects_broken(mutate: Any, expected: str) -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    mutate(doc)
    errors = compose_errors(doc)
    assert any(expected in e for e in errors), errors


# ---- dashboard


def test_dashboard_is_well_formed() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert dashboard_errors(doc) == []


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum(rate(citysight_camera_frames_in_total[1m])", "does not parse"),
        ("sum(citysight_camera_decode_ms[5m])", "does not parse"),
        ("up", "names no known metric"),
    ],
)
def test_dashboard_validator_rejects_bad_queries(expr: str, expected: str) -> None:
    doc = json.loads(DASHBOARD.read_text())
    doc["panels"].append({"id": 999, "title": "bad", "targets": [{"refId": "A", "expr": expr}]})
    assert any(expected in e for e in dashboard_errors(doc))


# ---- prometheus


def test_prometheus_config_is_valid() -> None:
    assert prometheus_errors(yaml.safe_load(PROMETHEUS.read_text())) == []


def test_prometheus_targets_ports_declared_by_pods() -> None:
    targets = prometheus_targets(yaml.safe_load(PROMETHEUS.read_text()))
    assert targets == {
        "citysight": ("citysight", 8000),
        "ray": ("citysight", 8080),
        "triton": ("triton", 8002),
        "redis": ("redis", 9121),
    }
    declared = {
        (labels["app.kubernetes.io/name"], port["containerPort"])
        for labels, spec in _pod_specs()
        for container in spec["containers"]
        for port in container.get("ports", [])
    }
    for job, target in targets.items():
        assert target in declared, f"{job} scrapes {target} but no pod declares it"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["global"].update(scrape_interval="15 seconds"), "bad duration"),
        (lambda d: d["scrape_configs"].append(copy.deepcopy(d["scrape_configs"][0])), "duplicate"),
        (lambda d: d["scrape_configs"][0].pop("kubernetes_sd_configs"), "no targets"),
        (lambda d: d["scrape_configs"][0]["relabel_configs"][0].update(regex="(("), "bad regex"),
        (lambda d: d.update(scrape_config=[]), "unknown top-level key"),
    ],
)
def test_prometheus_validator_rejects_broken(mutate: Any, expected: str) -> None:
    doc = yaml.safe_load(PROMETHEUS.read_text())
    mutate(doc)
    assert any(expected in e for e in prometheus_errors(doc))


# ---- Dockerfiles


def dockerfile_errors(text: str, base: str) -> list[str]:
    """Base image and the no-PyPI-pyds rule."""
    errors: list[str] = []
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    froms = re.findall(r"^FROM\s+(\S+)", code, re.MULTILINE)
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", code, re.MULTILINE))
    resolved = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), f) for f in froms]
    if base not in resolved:
        errors.append(f"not built FROM {base}")
    if re.search(r"pip3?\s+install[^\n]*\bpyds\b(?!-)", code):
        errors.append("pyds must come from the DeepStream SDK bindings, not pip")
    return errors


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("Dockerfile", "python:3.11-slim-bookworm"),
        ("Dockerfile.deepstream", "nvcr.io/nvidia/deepstream:7.1-triton-multiarch"),
    ],
)
def test_dockerfiles(name: str, base: str) -> None:
    assert dockerfile_errors((INFRA / "docker" / name).read_text(), base) == []


def test_deepstream_dockerfile_says_where_pyds_comes_from() -> None:
    text = (INFRA / "docker" / "Dockerfile.deepstream").read_text()
    assert "Never `pip install pyds`" in text
    assert "deepstream_python_apps" in text


def test_dockerfile_validator_rejects_pip_pyds() -> None:
    text = (INFRA / "docker" / "Dockerfile.deepstream").read_text() + "\nRUN pip install pyds\n"
    assert dockerfile_errors(text, "nvcr.io/nvidia/deepstream:7.1-triton-multiarch") == [
        "pyds must come from the DeepStream SDK bindings, not pip"
    ]


def _ray_resources(params: dict[str, Any]) -> dict[str, float]:
    # KubeRay passes the value to `ray start --resources=...`: a JSON object in a string
    return dict(json.loads(json.loads(params["resources"])))


def test_node_roles_are_the_ones_the_namespace_cluster_ran() -> None:
    """The RayService's groups advertise the same role resources as the hosts of the
    namespace cluster (benchmarks/cluster/spec.py, where placement is tested), and the
    config places stream workers by that resource."""
    from benchmarks.cluster.spec import SERVE_NODE, STREAM_NODE, ClusterSpec

    rs = _rayservice()["spec"]["rayClusterConfig"]
    head = _ray_resources(rs["headGroupSpec"]["rayStartParams"])
    (workers,) = [g for g in rs["workerGroupSpecs"] if g["groupName"] == "stream-workers"]
    stream = _ray_resources(workers["rayStartParams"])
    spec = ClusterSpec(serve_nodes=1)
    roles = {h.name: h.resources for h in spec.hosts if h.is_ray}
    assert head == roles["head"] == {SERVE_NODE: 1.0}
    assert stream == roles["stream1"] == {STREAM_NODE: 1.0}
    assert _cluster_config().services.streams.node_resource == STREAM_NODE
