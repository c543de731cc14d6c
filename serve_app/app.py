"""The Ray Serve application: the API ingress plus the rules consumer.

``build_app({"config": <CitysightConfig JSON>, "redis_url": "redis://..."})`` returns an
application with two deployments:

* ``Ingress``: the FastAPI app of :func:`serve_app.http.create_api`, built on each replica
  (late-bound ``__serve_build_asgi_app__``, so no Redis client is ever pickled).
  ``max_ongoing_requests`` is ``services.http.max_connections`` because every open
  WebSocket holds one slot for its whole life (Serve's default of 5 would stall the 6th
  subscriber). Each replica runs its own feed reader, so fan-out works across replicas.
* ``RulesConsumer`` (``serve_app/deployments/rules.py``), bound into the same app: one
  deployment, or ``RulesConsumer-<i>`` per shard group when ``services.rules.consumers`` > 1.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import FastAPI
from ray import serve

from citysight.config import CitysightConfig


@serve.ingress()
class Ingress:
    """HTTP/WebSocket ingress replica."""

    def __init__(self, config: dict[str, Any], redis_url: str, rules: Any = None) -> None:
        """Keep the arguments; the ASGI app is built by :meth:`__serve_build_asgi_app__`.

        Args:
            config: CitysightConfig as a JSON dict.
            redis_url: Redis URL.
            rules: Handles of the rules deployments (kept so Serve deploys them with the app).
        """
        self._cfg = CitysightConfig.model_validate(config)
        self._redis_url = redis_url
        self._rules = rules

    def __serve_build_asgi_app__(self) -> FastAPI:
        from serve_app.http import create_api

        return create_api(self._cfg, self._redis_url)


def app_config(args: dict[str, Any]) -> tuple[CitysightConfig, str]:
    """The config and Redis URL of :func:`build_app`'s arguments.

    ``config`` (a JSON dict) is what ``citysight run`` passes; ``config_path`` (a YAML file,
    as mounted in a cluster) is what the generated ``serveConfigV2`` passes. ``redis_url``
    defaults to the config's ``services.redis.url`` with its password.

    Raises:
        ValueError: no config, an invalid one, or no Redis to talk to (the message says which).
    """
    if args.get("config_path"):
        from citysight.config import ConfigError, load_config

        try:
            cfg = load_config(str(args["config_path"]))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    else:
        cfg = CitysightConfig.model_validate(args.get("config") or {})
    redis_url = args.get("redis_url") or cfg.services.redis.connection_url()
    if not redis_url:
        raise ValueError(
            "the Serve app needs Redis: set services.redis.url or sentinels (an embedded Redis "
            "is started only by `citysight run`/`demo`) or pass redis_url"
        )
    return cfg, str(redis_url)


def rules_deployment_name(index: int, consumers: int) -> str:
    """``RulesConsumer`` alone, else ``RulesConsumer-<index>`` (one per shard group)."""
    return "RulesConsumer" if consumers == 1 else f"RulesConsumer-{index}"


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder (``serve run serve_app.app:build_app``).

    Args:
        args: ``{"config": <CitysightConfig JSON dict>, "redis_url": str}`` or
            ``{"config_path": "/etc/citysight/citysight.yaml"}`` (see :func:`app_config`);
            the rules deployments are skipped when ``"rules": false``. Optional:
            ``"ingress_actor_options"`` and ``"rules_actor_options"`` (merged into the
            deployments' ``ray_actor_options``: node-role placement such as
            ``{"resources": {"serve_node": 0.01}}``, the labels the KubeRay manifests give
            their nodes), ``"consumer_options"`` (keyword arguments of
            :class:`serve_app.consumer.DetectionsConsumer`, e.g. ``claim_min_idle_ms``).

    Returns:
        The bound application: ``Ingress`` plus one rules-consumer deployment per shard group
        (``services.rules.consumers``), each a single replica with a fixed consumer name, so
        the rule state of a camera lives in exactly one replica.
    """
    cfg, redis_url = app_config(args)
    http = cfg.services.http
    rules_apps: list[Any] = []
    if args.get("rules", True):
        from serve_app.deployments.rules import RulesConsumer

        cfg_json = cfg.model_dump(mode="json")
        groups = cfg.services.rules_shard_groups()
        rules_opts: dict[str, Any] = {}
        if args.get("rules_actor_options"):
            rules_opts["ray_actor_options"] = {
                **(cast(serve.Deployment, RulesConsumer).ray_actor_options or {}),
                **dict(args["rules_actor_options"]),
            }
        consumer_options = dict(args.get("consumer_options") or {})
        for i, shards in enumerate(groups):
            # user_config makes rule edits hot-reloadable (RulesConsumer.reconfigure).
            # @serve.deployment made the class a Deployment (mypy keeps the class type).
            rules_apps.append(
                cast(serve.Deployment, RulesConsumer)
                .options(
                    name=rules_deployment_name(i, len(groups)),
                    num_replicas=1,
                    user_config={"config": cfg_json},
                    **rules_opts,
                )
                .bind(
                    cfg_json,
                    redis_url,
                    shards if len(groups) > 1 else None,
                    options=consumer_options or None,
                )
            )
    # Given the class, serve.deployment returns the Deployment (ray annotates the decorator).
    ingress = cast(
        serve.Deployment,
        serve.deployment(
            Ingress,
            name="Ingress",
            num_replicas=http.ingress_replicas,
            max_ongoing_requests=http.max_connections,
            ray_actor_options={"num_cpus": 0, **dict(args.get("ingress_actor_options") or {})},
        ),
    )
    return ingress.bind(cfg.model_dump(mode="json"), redis_url, rules_apps)
