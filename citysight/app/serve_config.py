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
    # placement by role (services.ray.serve_resource): a share, so any number fit a node
    role = cfg.services.ray.serve_resource

    def placed() -> dict[str, Any]:  # a fresh dict each time: no YAML anchors
        return {"resources": {role: 0.01}} if role else {}

    rules = [
        {
            "name": rules_deployment_name(i, n),
            "num_replicas": 1,
            "max_ongoing_requests": 100,
            "ray_actor_options": {"num_cpus": 2, **placed()},
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
                        "ray_actor_options": {"num_cpus": 1, **placed()},
                    },
                    *rules,
                ],
            }
        ]
    }


def serve_config_yaml(cfg: CitysightConfig, **kw: Any) -> str:
    """:func:`build_serve_config` as YAML text (what goes into ``serveConfigV2``)."""
    return yaml.safe_dump(build_serve_config(cfg, **kw), sort_keys=False)
