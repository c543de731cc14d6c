"""Kubernetes manifests from the same truth as the namespace cluster.

``python -m benchmarks.cluster.manifests [--out infra/k8s] [--check]`` (also
``citysight cluster manifests``) writes, from :data:`TRUTH` (the
:class:`~benchmarks.cluster.spec.ClusterSpec` that ``citysight bench cluster --nodes 4``
runs) and the functions the harness itself uses to configure its hosts:

* ``sentinel.yaml`` whole: the Sentinel ConfigMap (``sentinel monitor``, quorum,
  ``down-after-milliseconds``, ``failover-timeout``, ``parallel-syncs``: the lines of
  :func:`benchmarks.cluster.redis_ha.sentinel_directives`), headless Service, StatefulSet
  (one pod per Sentinel of the spec) and PodDisruptionBudget;
* generated regions (between ``# >>> generated (NAME)`` and ``# <<< generated (NAME)``) of
  the hand-written files:

  - ``rayservice.yaml``: the head, ``stream-workers`` and ``serve-workers`` groups'
    ``rayStartParams.resources`` (the role resources of the spec's head, stream and serve
    hosts) and ``serveConfigV2`` (from the configmap's config by
    :func:`citysight.app.serve_config.serve_config_yaml`: every deployment asks for a share
    of ``serve_node``);
  - ``configmap.yaml``: ``services.redis`` (``sentinels``, ``master_name``,
    ``alert_replicas``, ``alert_wait_ms``), ``services.ray.serve_resource``,
    ``services.streams.node_resource`` and the Ray health-check variables of
    ``citysight-env`` (:func:`benchmarks.cluster.ray_nodes.health_env`);
  - ``redis.yaml``: the durability lines of ``redis.conf``
    (:data:`benchmarks.cluster.redis_ha.DURABILITY`), ``start.sh`` (asks the Sentinels for
    the current primary before it starts as a replica of it) and the StatefulSet's
    ``replicas`` (the spec's Redis hosts).

``--check`` writes nothing and exits 1 naming every file that differs; the tests
(``tests/benchmarks/cluster/test_manifests.py``) do the same, and also parse the
committed YAML and compare each value with what the harness runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from benchmarks.cluster import ray_nodes, redis_ha
from benchmarks.cluster.spec import (
    ALERT_REPLICAS,
    ALERT_WAIT_MS,
    MASTER_NAME,
    RAY_HEAD,
    REDIS,
    SENTINEL,
    ClusterSpec,
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"

TRUTH = ClusterSpec(serve_nodes=1)
"""The layout of ``citysight bench cluster --nodes 4``: head, one serve node, two stream
nodes, Redis primary and replica, three Sentinels. Only roles, ports and timings go into
the manifests; sizes (replica counts of worker groups) come from ``citysight plan``."""

NAMESPACE = "citysight"
REDIS_IMAGE = "redis:7.2-bookworm"
REDIS_SVC = "redis-headless"
SENTINEL_SVC = "redis-sentinel-headless"
GENERATOR = "python -m benchmarks.cluster.manifests"

_BEGIN = re.compile(r"^(?P<indent> *)# >>> generated \((?P<name>[a-z0-9-]+)\)")


class ManifestError(ValueError):
    """A generated region is malformed (no end marker, unknown name)."""


# --------------------------------------------------------------------------- truth, derived


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def role_resources(spec: ClusterSpec, role: str) -> dict[str, float | int]:
    """The Ray resources of the spec's hosts of ``role`` (``head``, ``stream``, ``serve``)."""
    for h in spec.hosts:
        if not h.is_ray:
            continue
        if role == "head" and h.kind == RAY_HEAD:
            return {k: _num(v) for k, v in h.resources.items()}
        if h.kind != RAY_HEAD and h.name.rstrip("0123456789") == role:
            return {k: _num(v) for k, v in h.resources.items()}
    raise ManifestError(f"the spec has no {role} host (serve_nodes=0?)")


def pod_dns(statefulset: str, service: str, ordinal: int) -> str:
    """Stable DNS name of a StatefulSet pod."""
    return f"{statefulset}-{ordinal}.{service}.{NAMESPACE}.svc.cluster.local"


def redis_servers(spec: ClusterSpec) -> int:
    """Redis servers (primary and replicas) of the spec."""
    return sum(1 for h in spec.hosts if h.kind == REDIS)


def sentinel_addresses(spec: ClusterSpec) -> list[str]:
    """``services.redis.sentinels`` on Kubernetes: every Sentinel pod, ``host:port``."""
    n = sum(1 for h in spec.hosts if h.kind == SENTINEL)
    return [f"{pod_dns('redis-sentinel', SENTINEL_SVC, i)}:{spec.sentinel_port}" for i in range(n)]


# --------------------------------------------------------------------------- renderers


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (config files, scripts) as literal blocks, as a person writes them."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def _dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)


def _resources(role: str) -> Callable[[ClusterSpec, Context], str]:
    def render(spec: ClusterSpec, ctx: Context) -> str:
        # KubeRay passes it on as `ray start --resources=<JSON>`: a JSON object in a string
        return _dump({"resources": json.dumps(json.dumps(role_resources(spec, role)))})

    return render


def _redis_config(spec: ClusterSpec, ctx: Context) -> str:
    return _dump(
        {
            "sentinels": sentinel_addresses(spec),
            "master_name": MASTER_NAME,
            "alert_replicas": ALERT_REPLICAS,
            "alert_wait_ms": ALERT_WAIT_MS,
        }
    )


def _serve_resource(spec: ClusterSpec, ctx: Context) -> str:
    (role,) = role_resources(spec, "serve")
    return _dump({"serve_resource": role})


def _node_resource(spec: ClusterSpec, ctx: Context) -> str:
    (role,) = role_resources(spec, "stream")
    return _dump({"node_resource": role})


def _ray_health(spec: ClusterSpec, ctx: Context) -> str:
    return _dump(ray_nodes.health_env(spec))


def _serve_config(spec: ClusterSpec, ctx: Context) -> str:
    from citysight.app.serve_config import serve_config_yaml

    body = serve_config_yaml(ctx.cluster_config())
    return "serveConfigV2: |\n" + "".join(f"  {line}\n" for line in body.splitlines())


def _redis_durability(spec: ClusterSpec, ctx: Context) -> str:
    return "".join(f"{line}\n" for line in redis_ha.DURABILITY)


def _redis_replicas(spec: ClusterSpec, ctx: Context) -> str:
    return _dump({"replicas": redis_servers(spec)})


def _redis_start(spec: ClusterSpec, ctx: Context) -> str:
    sentinels = "".join(f" \\\n    {a.rsplit(':', 1)[0]}" for a in sentinel_addresses(spec))
    pod0 = pod_dns("redis", REDIS_SVC, 0)
    script = f"""#!/bin/sh
set -eu
me="$HOSTNAME.{REDIS_SVC}.{NAMESPACE}.svc.cluster.local"
# After a failover the primary is whichever pod Sentinel promoted, not pod 0: ask the
# Sentinels first, so a restarted old primary comes back as a replica (no split brain).
primary=""
for s in{sentinels}; do
  out=$(timeout 3 redis-cli -h "$s" -p {spec.sentinel_port} --raw \\
        sentinel get-master-addr-by-name {MASTER_NAME} 2>/dev/null | head -n 1) || true
  if [ -n "$out" ]; then primary="$out"; break; fi
done
# No Sentinel knows a primary yet (first start of the set): pod 0 is the primary.
[ -n "$primary" ] || primary="{pod0}"
set -- /etc/redis/redis.conf --port {spec.redis_port} --requirepass "$REDIS_PASSWORD" \\
  --masterauth "$REDIS_PASSWORD" --replica-announce-ip "$me"
if [ "$primary" != "$me" ]; then
  set -- "$@" --replicaof "$primary" {spec.redis_port}
fi
exec redis-server "$@"
"""
    return "start.sh: |\n" + "".join(f"  {line}\n" for line in script.splitlines())


RENDERERS: dict[str, Callable[[ClusterSpec, Context], str]] = {
    "head-resources": _resources("head"),
    "stream-resources": _resources("stream"),
    "serve-resources": _resources("serve"),
    "serve-config": _serve_config,
    "redis-config": _redis_config,
    "serve-resource": _serve_resource,
    "node-resource": _node_resource,
    "ray-health": _ray_health,
    "redis-durability": _redis_durability,
    "redis-replicas": _redis_replicas,
    "redis-start": _redis_start,
}
"""Region name -> what goes between its markers (unindented; the marker's indent is added)."""


class Context:
    """What a renderer may need besides the spec: the configmap's config, once generated."""

    def __init__(self, configmap_text: str) -> None:
        self.configmap_text = configmap_text

    def cluster_config(self) -> Any:
        """The citysight config ``configmap.yaml`` mounts (validated strictly)."""
        from citysight.config import parse_config

        for doc in yaml.safe_load_all(self.configmap_text):
            if doc and doc.get("kind") == "ConfigMap" and "citysight.yaml" in doc["data"]:
                text = doc["data"]["citysight.yaml"]
                return parse_config(yaml.safe_load(text), "configmap.yaml citysight.yaml")
        raise ManifestError("configmap.yaml has no citysight.yaml")


def render_regions(text: str, spec: ClusterSpec, ctx: Context, where: str = "") -> str:
    """``text`` with every generated region rendered anew from ``spec``.

    Raises:
        ManifestError: A region without its end marker, or of an unknown name.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        m = _BEGIN.match(line)
        i += 1
        if not m:
            continue
        name, indent = m["name"], m["indent"]
        end = f"{indent}# <<< generated ({name})"
        j = i
        while j < len(lines) and lines[j].rstrip("\n") != end:
            if _BEGIN.match(lines[j]):
                raise ManifestError(f"{where}: region {name!r} opens another before its end")
            j += 1
        if j == len(lines):
            raise ManifestError(f"{where}: region {name!r} has no end marker {end.strip()!r}")
        if name not in RENDERERS:
            raise ManifestError(f"{where}: unknown region {name!r}; known: {sorted(RENDERERS)}")
        body = RENDERERS[name](spec, ctx)
        out += [f"{indent}{b}" if b.strip() else b for b in body.splitlines(keepends=True)]
        out.append(lines[j])
        i = j + 1
    return "".join(out)


# --------------------------------------------------------------------------- sentinel.yaml


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": "citysight"}


def sentinel_documents(spec: ClusterSpec) -> list[dict[str, Any]]:
    """The Sentinel objects: ConfigMap, headless Service, StatefulSet, PDB."""
    n = sum(1 for h in spec.hosts if h.kind == SENTINEL)
    port = spec.sentinel_port
    conf = "\n".join(
        [
            f"port {port}",
            # pods keep their DNS names across restarts, not their addresses
            "sentinel resolve-hostnames yes",
            "sentinel announce-hostnames yes",
            *redis_ha.sentinel_directives(spec, pod_dns("redis", REDIS_SVC, 0)),
            "",
        ]
    )
    start = f"""#!/bin/sh
set -eu
# Sentinel rewrites its config (the current primary, the other Sentinels): keep the
# rewritten one across container restarts, start from the template only the first time.
if [ ! -f /data/sentinel.conf ]; then
  cp /etc/sentinel/sentinel.conf /data/sentinel.conf
  echo "sentinel auth-pass {MASTER_NAME} $REDIS_PASSWORD" >> /data/sentinel.conf
  echo "sentinel announce-ip $HOSTNAME.{SENTINEL_SVC}.{NAMESPACE}.svc.cluster.local" \\
    >> /data/sentinel.conf
fi
exec redis-server /data/sentinel.conf --sentinel
"""
    meta = {"namespace": NAMESPACE, "labels": _labels("redis-sentinel")}
    password = {
        "name": "REDIS_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "citysight-redis", "key": "password"}},
    }
    ask = f"redis-cli -p {port} sentinel get-master-addr-by-name {MASTER_NAME} | grep -q ."
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "redis-sentinel-config", **meta},
            "data": {"sentinel.conf": conf, "start.sh": start},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SENTINEL_SVC, **meta},
            "spec": {
                "clusterIP": "None",
                # Sentinels must find each other before any is ready
                "publishNotReadyAddresses": True,
                "selector": {"app.kubernetes.io/name": "redis-sentinel"},
                "ports": [{"name": "sentinel", "port": port, "targetPort": "sentinel"}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "redis-sentinel", **meta},
            "spec": {
                "serviceName": SENTINEL_SVC,
                "replicas": n,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app.kubernetes.io/name": "redis-sentinel"}},
                "template": {
                    "metadata": {"labels": _labels("redis-sentinel")},
                    "spec": {
                        "affinity": {
                            "podAntiAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": [
                                    {
                                        "topologyKey": "kubernetes.io/hostname",
                                        "labelSelector": {
                                            "matchLabels": {
                                                "app.kubernetes.io/name": "redis-sentinel"
                                            }
                                        },
                                    }
                                ]
                            }
                        },
                        "containers": [
                            {
                                "name": "sentinel",
                                "image": REDIS_IMAGE,
                                "command": ["/bin/sh", "/etc/sentinel/start.sh"],
                                "env": [password],
                                "ports": [{"name": "sentinel", "containerPort": port}],
                                "readinessProbe": {
                                    "exec": {"command": ["sh", "-c", ask]},
                                    "periodSeconds": 5,
                                },
                                "livenessProbe": {
                                    "tcpSocket": {"port": "sentinel"},
                                    "initialDelaySeconds": 15,
                                    "periodSeconds": 10,
                                },
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "64Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/sentinel"},
                                    {"name": "data", "mountPath": "/data"},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "config", "configMap": {"name": "redis-sentinel-config"}},
                            {"name": "data", "emptyDir": {}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "redis-sentinel", **meta},
            # a failover needs a quorum of Sentinels up
            "spec": {
                "minAvailable": spec.quorum,
                "selector": {"matchLabels": {"app.kubernetes.io/name": "redis-sentinel"}},
            },
        },
    ]


def sentinel_yaml(spec: ClusterSpec) -> str:
    """``infra/k8s/sentinel.yaml``."""
    t = spec.timings
    head = (
        f"# Generated by `{GENERATOR}` from benchmarks/cluster/spec.py: do not edit.\n"
        f"# Redis Sentinel for redis.yaml's primary and replica, with the namespace cluster's\n"
        f"# settings (docs/cluster.md): master {MASTER_NAME}, quorum {spec.quorum} of "
        f"{len(spec.sentinel_addresses)}, down-after {t.sentinel_down_after_ms} ms,\n"
        f"# failover-timeout {t.sentinel_failover_timeout_ms} ms, parallel-syncs "
        f"{t.sentinel_parallel_syncs}. Clients find the primary through them\n"
        f"# (configmap.yaml services.redis.sentinels).\n"
    )
    return head + "---\n".join(_dump(d) for d in sentinel_documents(spec))


# --------------------------------------------------------------------------- the files

REGION_FILES = ("configmap.yaml", "redis.yaml", "rayservice.yaml")  # configmap first


def generate(k8s: Path = K8S, spec: ClusterSpec = TRUTH) -> dict[str, str]:
    """File name -> generated text, from the files in ``k8s`` (their hand-written parts)."""
    out: dict[str, str] = {}
    ctx = Context((k8s / "configmap.yaml").read_text())
    for name in REGION_FILES:
        text = render_regions((k8s / name).read_text(), spec, ctx, where=name)
        out[name] = text
        if name == "configmap.yaml":
            ctx = Context(text)
    out["sentinel.yaml"] = sentinel_yaml(spec)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: write (or ``--check``) the generated manifests; returns the exit code."""
    ap = argparse.ArgumentParser(prog="citysight cluster manifests", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--out", default=str(K8S), help="the manifests folder (infra/k8s)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = ap.parse_args(argv)
    k8s = Path(args.out)
    try:
        files = generate(k8s)
    except (ManifestError, OSError, ValueError) as exc:
        print(f"manifests: {exc}", file=sys.stderr)
        return 2
    stale = [
        n for n, text in files.items() if not (k8s / n).exists() or (k8s / n).read_text() != text
    ]
    if args.check:
        for n in stale:
            print(f"stale: {k8s / n} (run `{GENERATOR}`)", file=sys.stderr)
        return 1 if stale else 0
    for n in stale:
        (k8s / n).write_text(files[n])
        print(f"wrote {k8s / n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
