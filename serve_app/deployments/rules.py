"""Ray Serve deployment that runs the rules consumer loop.

Durability never depends on handle calls: the replica consumes Redis Streams in a
background thread and acknowledges entries only after writing their alerts. A killed
replica is restarted by Serve under the same consumer name (derived from its shards), so
it reads its own pending entries first (see ``serve_app/consumer.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray import serve

from citysight.config import CitysightConfig, parse_config
from serve_app.consumer import DetectionsConsumer

logger = logging.getLogger(__name__)


def default_consumer_name(shards: list[int]) -> str:
    """Stable consumer name of a shard set (a restarted replica reuses it)."""
    return "rules-" + "-".join(str(s) for s in sorted(shards))


@serve.deployment(
    num_replicas=1,
    ray_actor_options={"num_cpus": 0.5},
    health_check_period_s=2.0,
    health_check_timeout_s=10.0,
    max_ongoing_requests=16,
)
class RulesConsumer:
    """One rules consumer per replica, over a fixed set of shards.

    Deploy one ``RulesConsumer`` application per shard group when one replica is not
    enough (each with its own ``shards``); replicas of one deployment would share the same
    consumer name.

    Args:
        config: The citysight configuration as a dict (validated here).
        redis_url: Redis URL.
        shards: Shards owned; ``None`` means all ``services.streams.shards``.
        consumer_name: Group consumer name; ``None`` derives it from the shards.
        options: Extra :class:`DetectionsConsumer` keyword arguments (tunables).
    """

    def __init__(
        self,
        config: dict[str, Any],
        redis_url: str,
        shards: list[int] | None = None,
        consumer_name: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        cfg = parse_config(config, "RulesConsumer config")
        owned = list(range(cfg.services.streams.shards)) if shards is None else list(shards)
        name = consumer_name or default_consumer_name(owned)
        self.started = time.time()
        self.consumer = DetectionsConsumer(redis_url, cfg, name, owned, **(options or {}))
        self.consumer.start()
        logger.info("rules consumer %s started on shards %s", name, owned)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Hot-reload: ``user_config`` is ``{"config": {...}}`` or the config dict itself."""
        data = user_config.get("config", user_config) if user_config else None
        if not data:
            return
        cfg: CitysightConfig = parse_config(data, "RulesConsumer user_config")
        self.consumer.reconfigure(cfg)
        logger.info("rules reconfigured: %d rule(s)", len(cfg.rules))

    def check_health(self) -> None:
        """Raise when the consume loop died, so Serve replaces the replica."""
        if not self.consumer.alive():
            raise RuntimeError(f"rules consume loop is not running: {self.consumer.last_error}")

    def stats(self) -> dict[str, Any]:
        """Counters, state, consumer name and the node it runs on (diagnostics only)."""
        import ray

        return {
            "state": self.consumer.state,
            "consumer": self.consumer.name,
            "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "started": self.started,
            **self.consumer.stats,
        }

    def __del__(self) -> None:
        consumer = getattr(self, "consumer", None)
        if consumer is not None:
            consumer.stop(timeout=2.0)
