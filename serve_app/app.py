"""The Ray Serve application: the API ingress plus the rules consumer.

``build_app({"config": <CitysightConfig JSON>, "redis_url": "redis://..."})`` returns an
application with two deployments:

* ``Ingress``: the FastAPI app of :func:`serve_app.http.create_api`, built on each replica
  (late-bound ``__serve_build_asgi_app__``, so no Redis client is ever pickled).
  ``max_ongoing_requests`` is ``services.http.max_connections`` because every open
  WebSocket holds one slot for its whole life (Serve's default of 5 would stall the 6th
  subscriber). Each replica runs its own feed reader, so fan-out works across replicas.
* ``RulesConsumer`` (``serve_app/deployments/rules.py``), bound into the same app.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from fastapi import FastAPI
from ray import serve

from citysight.config import CitysightConfig

logger = logging.getLogger(__name__)


@serve.ingress()
class Ingress:
    """HTTP/WebSocket ingress replica."""

    def __init__(self, config: dict[str, Any], redis_url: str, rules: Any = None) -> None:
        """Keep the arguments; the ASGI app is built by :meth:`__serve_build_asgi_app__`.

        Args:
            config: CitysightConfig as a JSON dict.
            redis_url: Redis URL.
            rules: Handle of the rules deployment (kept so Serve deploys it with the app).
        """
        self._cfg = CitysightConfig.model_validate(config)
        self._redis_url = redis_url
        self._rules = rules

    def __serve_build_asgi_app__(self) -> FastAPI:
        from serve_app.http import create_api

        return create_api(self._cfg, self._redis_url)


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder (``serve run serve_app.app:build_app``).

    Args:
        args: ``{"config": <CitysightConfig JSON dict>, "redis_url": str}``; the rules
            deployment is skipped when ``"rules": false``.

    Returns:
        The bound application.
    """
    cfg = CitysightConfig.model_validate(args.get("config") or {})
    redis_url = str(args["redis_url"])
    http = cfg.services.http
    rules_app = None
    if args.get("rules", True):
        from serve_app.deployments.rules import RulesConsumer

        cfg_json = cfg.model_dump(mode="json")
        # user_config makes rule edits hot-reloadable (RulesConsumer.reconfigure).
        # @serve.deployment turned the class into a Deployment (mypy keeps the class type).
        rules_app = (
            cast(serve.Deployment, RulesConsumer)
            .options(user_config={"config": cfg_json})
            .bind(cfg_json, redis_url)
        )
    # Given the class, serve.deployment returns the Deployment (ray annotates the decorator).
    ingress = cast(
        serve.Deployment,
        serve.deployment(
            Ingress,
            name="Ingress",
            num_replicas=http.ingress_replicas,
            max_ongoing_requests=http.max_connections,
            ray_actor_options={"num_cpus": 0},
        ),
    )
    return ingress.bind(cfg.model_dump(mode="json"), redis_url, rules_app)
