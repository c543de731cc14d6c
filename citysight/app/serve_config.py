"""The Ray Serve config (``serveConfigV2``) generated from the same config as a local run.

``infra/k8s/rayservice.yaml`` embeds this output; a test regenerates it and compares, so the
cluster deployment and ``citysight run`` cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import yaml

from citysight.config import CitysightConfig

APP_NAME = "citysight"
IMPORT_PATH = "serve_app.app:build_app"


INGRESS_SHARE = 0.01
"""``serve_resource`` per ingress replica: a sliver, so any number share a serve node."""
RULES_SHARE = 0.6
"""``serve_resource`` per rules replica: more than half a node, so at most one per node and
one node's death takes exactly one consumer (its peers claim its pending entries). The
namespace cluster (benchmarks/cluster/city.py) places its replicas with the same shares."""


def build_serve_config(
    cfg: CitysightConfig, *, config_path: str = "/etc/citysight/citysight.yaml"
) -> dict[str, Any]:
    """``serveConfigV2`` for a cluster running ``cfg``.

    Args:
        cfg: The deployment's config (the same file ``citysight run`` reads).
        config_path: Where the config file is mounted in the Ray pods; ``build_app`` reads
            it there (and the Redis password from ``services.redis.password_env``).

    The rules consumers are one deployment per shard group (``services.rules.consumers``),
    each exactly one replica: two replicas of one consumer would share a consumer name and
    split a camera's detections, and with them its rule state.
    """
    from serve_app.app import rules_deployment_name

    http = cfg.services.http
    n = cfg.services.rules.consumers
    # placement by role (services.ray.serve_resource): shares of the node's one unit
    role = cfg.services.ray.serve_resource

    def placed(share: float) -> dict[str, Any]:  # a fresh dict each time: no YAML anchors
        return {"resources": {role: share}} if role else {}

    rules = [
        {
            "name": rules_deployment_name(i, n),
            "num_replicas": 1,
            "max_ongoing_requests": 100,
            "ray_actor_options": {"num_cpus": 2, **placed(RULES_SHARE)},
        }
        for i in range(n)
    ]
    return {
        "applications": [
            {
                "name": APP_NAME,
                "import_path": IMPORT_PATH,
                "route_prefix": "/",
                "args": {"config_path": config_path},
                "deployments": [
                    {
                        "name": "Ingress",
                        "num_replicas": max(2, http.ingress_replicas),
                        # Each open WebSocket holds one slot for its whole life.
                        "max_ongoing_requests": http.max_connections,
                        "ray_actor_options": {"num_cpus": 1, **placed(INGRESS_SHARE)},
                    },
                    *rules,
                ],
            }
        ]
    }


def serve_config_yaml(cfg: CitysightConfig, **kw: Any) -> str:
    """:func:`build_serve_config` as YAML text (what goes into ``serveConfigV2``)."""
    return yaml.safe_dump(build_serve_config(cfg, **kw), sort_keys=False)
